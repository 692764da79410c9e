package tests

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// testCommands returns the test command lines of text (a line running go test, joined
// with its backslash continuations), in order.
func testCommands(text string) []string {
	var out []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.Contains(l, "go test ") || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

// The README shows exactly the commands scripts/test and .ci/run run: a newcomer reading
// it runs what CI runs.
func TestReadmeShowsTheTestCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../scripts/test")
	if err != nil {
		t.Fatal(err)
	}
	want, got := testCommands(string(script)), testCommands(string(readme))
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("README's test commands %q, scripts/test runs %q", got, want)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if ciCmds := testCommands(string(ci)); !slices.Equal(ciCmds, want) {
		t.Fatalf(".ci/run runs %q, the README's test commands are %q", ciCmds, want)
	}
	if !strings.Contains(string(readme), "\nscripts/test\n") {
		t.Fatal("the README's quick start must run scripts/test")
	}
}
