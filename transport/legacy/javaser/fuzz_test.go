package javaser

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds the decoder arbitrary bytes, seeded with the 28 golden streams (a
// plain `go test` runs the seeds; `go test -fuzz FuzzDecode` explores from them). The
// decoder never panics, refuses with ErrRefused only, and whatever it accepts is a
// graph Encode writes and Decode reads back to the same stream (a second round trip
// is byte-identical to the first).
func FuzzDecode(f *testing.F) {
	for _, v := range goldenVectors(f) {
		f.Add(readGolden(f, v.File))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrRefused) || v != nil {
				t.Fatalf("refusal %v returned %s", err, Describe(v))
			}
			return
		}
		once, err := Encode(v)
		if err != nil {
			t.Fatalf("accepted graph does not encode: %v", err)
		}
		v2, err := Decode(once)
		if err != nil {
			t.Fatalf("re-encoded stream refused: %v", err)
		}
		twice, err := Encode(v2)
		if err != nil {
			t.Fatalf("second encode: %v", err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("round trip unstable:\n% x\n% x", once, twice)
		}
	})
}
