package wire_test

import (
	"encoding/json"
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

// A device's decoding of one notifyCommit: the one-pass fast path against the two
// encoding/json passes the client made before (the envelope with raw params, then the
// whole event again).
func BenchmarkDecodeNotifyCommit(b *testing.B) {
	body, err := os.ReadFile("testdata/golden/events/notifyCommit.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := wire.ParseNotifyCommit(body); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding-json-twice", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var raw struct {
				Method string            `json:"method"`
				Params []json.RawMessage `json:"params"`
			}
			var env struct {
				Method string                    `json:"method"`
				Params []wire.CommitNotification `json:"params"`
			}
			if json.Unmarshal(body, &raw) != nil || json.Unmarshal(body, &env) != nil {
				b.Fatal("decode")
			}
		}
	})
}
