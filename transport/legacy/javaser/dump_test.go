package javaser

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// manifestGraphs returns the object graph MANIFEST.md prints for each golden file.
func manifestGraphs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "golden", "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)### (\\d\\d-[^\\n]+\\.bin)\\n.*?```\\n(.*?)```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// Every golden stream decodes to the values Java's ObjectInputStream read from it (the
// graphs printed in MANIFEST.md): requests, responses and events.
func TestGoldenDecodesToManifestGraph(t *testing.T) {
	graphs := manifestGraphs(t)
	for _, v := range goldenVectors(t) {
		t.Run(v.File, func(t *testing.T) {
			want, ok := graphs[v.File]
			if !ok {
				t.Fatalf("MANIFEST.md has no graph for %s", v.File)
			}
			val, err := Decode(readGolden(t, v.File))
			if err != nil {
				t.Fatal(err)
			}
			if got := Dump(val); got != want {
				t.Errorf("decoded graph differs from MANIFEST.md\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}
