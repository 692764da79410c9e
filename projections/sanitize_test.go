package projections

import "testing"

func TestPGText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"plain/ascii", "plain/ascii"},
		{"ünïcødé", "ünïcødé"},
		{"a\x00b", "a\uFFFDb"},
		{"\x00\x00", "\uFFFD\uFFFD"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"\xc3\x00", "\uFFFD\uFFFD"},
	} {
		if got := pgText(c.in); got != c.want {
			t.Errorf("pgText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if pgTextPtr(nil) != nil {
		t.Error("pgTextPtr(nil) must stay nil")
	}
	s := "x\x00"
	if got := pgTextPtr(&s); *got != "x\uFFFD" {
		t.Errorf("pgTextPtr = %q", *got)
	}
}
