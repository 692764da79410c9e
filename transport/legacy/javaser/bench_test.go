package javaser

import "testing"

// The largest golden request (a two-item commit, 1,521 bytes) and event (1,726 bytes).
func BenchmarkDecodeCommit(b *testing.B) {
	body := readGolden(b, "15-req-commit-new-folder-and-file.bin")
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeNotifyCommit(b *testing.B) {
	v, err := Decode(readGolden(b, "16-evt-notifyCommit-new-ok.bin"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}
