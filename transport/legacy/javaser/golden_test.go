package javaser

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// vector is one entry of testdata/golden/vectors.json.
type vector struct {
	File      string `json:"file"`
	Direction string `json:"direction"`
	Method    string `json:"method"`
	Length    int    `json:"length"`
}

func goldenVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "golden", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 28 {
		t.Fatalf("%d vectors, want 28", len(vs))
	}
	return vs
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every golden stream decodes, and encoding what it decoded to gives back its exact
// bytes: descriptors, handles, shared objects and block data as Java wrote them.
func TestGoldenRoundTrip(t *testing.T) {
	for _, v := range goldenVectors(t) {
		t.Run(v.File, func(t *testing.T) {
			b := readGolden(t, v.File)
			if len(b) != v.Length {
				t.Fatalf("file has %d bytes, vectors.json says %d", len(b), v.Length)
			}
			val, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := Encode(val)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(out, b) {
				i := 0
				for i < len(out) && i < len(b) && out[i] == b[i] {
					i++
				}
				t.Fatalf("re-encoded stream differs from the golden one at byte %d (%d vs %d bytes)", i, len(out), len(b))
			}
		})
	}
}
