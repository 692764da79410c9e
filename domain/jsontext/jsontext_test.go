package jsontext

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
)

func marshal(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var seeds = []string{"", "plain", `quote " and \ backslash`, "<a href=\"x\">&amp;</a>", "\b\f\n\r\t\x00\x01\x1f\x7f",
	"é ü 日本語 🎉", "\u2028\u2029", "bad \xff utf8 \xc3", "mixed \xe2\x80 end"}

func TestAppendStringIsMarshal(t *testing.T) {
	for _, s := range seeds {
		if got, want := string(AppendString(nil, s)), marshal(t, s); got != want {
			t.Errorf("AppendString(%q) = %s, json.Marshal %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(AppendString([]byte("x"), s)), "x"+marshal(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s, json.Marshal %s", s, got, want)
		}
	})
}

func TestAppendUUIDAndOptIntAreMarshal(t *testing.T) {
	id := uuid.New()
	if got, want := string(AppendUUID(nil, id)), marshal(t, id); got != want {
		t.Errorf("AppendUUID = %s, json.Marshal %s", got, want)
	}
	v := int64(-42)
	if got, want := string(AppendOptInt(nil, &v)), marshal(t, &v); got != want {
		t.Errorf("AppendOptInt = %s, json.Marshal %s", got, want)
	}
	if got := string(AppendOptInt[int64](nil, nil)); got != "null" {
		t.Errorf("AppendOptInt(nil) = %s", got)
	}
}
