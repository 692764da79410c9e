package projections

import (
	"os"
	"reflect"
	"testing"

	"github.com/stacksync-es/syncservice/domain"
)

// checkSameAsDomain fails unless decodeCommitted either gives up on data or returns
// exactly what domain.Decode returns; it reports whether it decoded.
func checkSameAsDomain(t *testing.T, data []byte) bool {
	t.Helper()
	got, ok := decodeCommitted(data)
	if !ok {
		return false
	}
	want, err := domain.Decode(domain.TypeCommitted, data)
	if err != nil {
		t.Fatalf("decodeCommitted accepted what domain.Decode refuses (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeCommitted differs from domain.Decode:\n got %#v\nwant %#v\ninput %s", got, want, data)
	}
	return true
}

// Every generated Committed event (json.Marshal's output) takes the fast path and
// decodes as domain.Decode decodes it.
func TestDecodeCommittedGenerated(t *testing.T) {
	g := newGen(t, 7)
	n := 0
	for _, b := range g.history(4, 8, 2000) {
		for _, r := range b.recs {
			if r.Type != domain.TypeCommitted {
				continue
			}
			if !checkSameAsDomain(t, r.Data) {
				t.Fatalf("decodeCommitted gave up on a generated event:\n%s", r.Data)
			}
			n++
		}
	}
	golden, err := os.ReadFile("../domain/testdata/events/Committed.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if !checkSameAsDomain(t, golden) {
		t.Fatalf("decodeCommitted gave up on the golden event")
	}
	t.Logf("%d generated events", n)
}

const plainCommit = `{"prevHash":"h","workspaceId":"6f1c2a0e-3b7d-4c55-9a8e-0d2f4e6a8b1c","workspaceVersion":2,` +
	`"items":[{"committedVersion":1,"commitSucceed":true,"stored":true,"metadata":{"id":5,"version":1,` +
	`"status":"NEW","chunks":["a"],"filename":"f","modifiedAt":"2026-11-30T02:05:06.789Z"}}]}`

// decodeCommittedCases are inputs the fast path must hand to domain.Decode (take=false)
// or may decode itself (take=true), in both cases agreeing with domain.Decode.
var decodeCommittedCases = []struct {
	name, data string
	take       bool
}{
	{"plain", plainCommit, true},
	{"white space", " {\n\"workspaceVersion\" : 3 , \"items\" : [ ] }\n", true},
	{"empty object", `{}`, true},
	{"nulls of pointers and slices", `{"items":[{"metadata":{"id":null,"tempId":null,"parentId":null,"chunks":null}},{"metadata":null}]}`, true},
	{"escapes in strings", `{"requestId":"a\"b\\c\u00e9\u003c","items":[{"metadata":{"filename":"x\ty","chunks":["\u0041"]}}]}`, true},
	{"non-ASCII", `{"requestId":"déjà vu ☃"}`, true},
	{"invalid UTF-8", "{\"requestId\":\"a\xffb\"}", true},
	{"negative zero", `{"workspaceVersion":-0}`, true},
	{"case variant of a key", `{"WorkspaceVersion":3}`, false},
	{"unknown key", `{"extra":1,"workspaceVersion":3}`, false},
	{"duplicate scalar", `{"workspaceVersion":1,"workspaceVersion":2}`, false},
	{"duplicate metadata merges", `{"items":[{"metadata":{"id":1,"filename":"a"},"metadata":{"filename":"b"}}]}`, false},
	{"null scalar", `{"workspaceVersion":null}`, false},
	{"null uuid", `{"workspaceId":null}`, false},
	{"bad uuid", `{"workspaceId":"nope"}`, false},
	{"escaped uuid", `{"workspaceId":"6f1c2a0e-3b7d-4c55-9a8e-0d2f4e6a8b1\u0063"}`, false},
	{"bad time", `{"committedAt":"yesterday"}`, false},
	{"fraction", `{"workspaceVersion":1.0}`, false},
	{"exponent", `{"workspaceVersion":1e3}`, false},
	{"leading zero", `{"workspaceVersion":01}`, false},
	{"overflow", `{"workspaceVersion":9223372036854775808}`, false},
	{"string for a number", `{"workspaceVersion":"1"}`, false},
	{"number for a bool", `{"items":[{"stored":1}]}`, false},
	{"trailing data", `{"workspaceVersion":1} x`, false},
	{"two values", `{} {}`, false},
	{"top-level null", `null`, false},
	{"unterminated", `{"workspaceVersion":1`, false},
	{"trailing comma", `{"workspaceVersion":1,}`, false},
	{"control character", "{\"requestId\":\"a\x01b\"}", false},
	{"literal with tail", `{"items":[{"stored":truex}]}`, false},
}

func TestDecodeCommittedCases(t *testing.T) {
	for _, c := range decodeCommittedCases {
		t.Run(c.name, func(t *testing.T) {
			if took := checkSameAsDomain(t, []byte(c.data)); took != c.take {
				t.Fatalf("decodeCommitted took it: %v, want %v", took, c.take)
			}
		})
	}
}

// FuzzDecodeCommitted: whatever the bytes, the fast path gives up or agrees with
// domain.Decode. go test -run '^$' -fuzz FuzzDecodeCommitted ./projections/
func FuzzDecodeCommitted(f *testing.F) {
	for _, c := range decodeCommittedCases {
		f.Add([]byte(c.data))
	}
	g := newGen(f, 9)
	for _, b := range g.history(2, 2, 20) {
		for _, r := range b.recs {
			if r.Type == domain.TypeCommitted {
				f.Add(r.Data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSameAsDomain(t, data)
	})
}

// BenchmarkDecodeCommitted compares decodeCommitted with domain.Decode on generated
// Committed events (go test -run '^$' -bench DecodeCommitted ./projections/).
func BenchmarkDecodeCommitted(b *testing.B) {
	g := newGen(b, 11)
	var events [][]byte
	for _, bt := range g.history(4, 8, 1000) {
		for _, r := range bt.recs {
			if r.Type == domain.TypeCommitted {
				events = append(events, r.Data)
			}
		}
	}
	b.Run("domain.Decode", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := domain.Decode(domain.TypeCommitted, events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodeCommitted", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := decodeCommitted(events[i%len(events)]); !ok {
				b.Fatal("gave up")
			}
		}
	})
}
