package wire_test

import (
	"os"
	"testing"

	"github.com/stacksync-es/syncservice/transport/wire"
)

// go test -run '^$' -bench ParseCommitRequest -benchmem ./transport/wire/
// A commit request as the server decodes it: the envelope, then commit's request object.
func BenchmarkParseCommitRequest(b *testing.B) {
	body, err := os.ReadFile("testdata/golden/requests/commit.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req, err := wire.ParseRequest(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wire.ParseCommit(req.Params); err != nil {
			b.Fatal(err)
		}
	}
}
