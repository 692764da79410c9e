package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// benchItems returns n item versions shaped like syncctl bench's files (and a folder
// every 100 items), as the server stores them.
func benchItems(n int) []domain.ItemMetadata {
	dev, ws := uuid.New(), uuid.New()
	at := time.Date(2026, 12, 6, 14, 0, 0, 123e6, time.UTC)
	out := make([]domain.ItemMetadata, n)
	for i := range out {
		id, temp := domain.ItemID(1000+i), int64(-i-1)
		m := domain.ItemMetadata{ID: &id, TempID: &temp, Version: 1, DeviceID: dev, WorkspaceID: ws,
			Status: domain.StatusNew, ModifiedAt: at, Checksum: int64(i), Size: 1024,
			Filename: fmt.Sprintf("bench-fill-%d-%d.bin", i/1000, i%1000), Mimetype: "application/octet-stream",
			Chunks: []string{fmt.Sprintf("chk-fill-%d-%d", i/1000, i%1000)}}
		if i%100 == 0 {
			m.IsFolder, m.Size, m.Checksum, m.Chunks, m.Mimetype = true, 0, 0, []string{}, "inode/directory"
		} else {
			p := domain.ItemID(1000 + i - i%100)
			m.ParentID = &p
		}
		out[i] = m
	}
	return out
}

// renderReply renders a getChanges reply of items as the server does.
func renderReply(items []domain.ItemMetadata) []byte {
	b := []byte(`{"result":[`)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendItem(b, &items[i])
	}
	return append(b, `],"id":"corr-1","idOmq":"ISyncService"}`...)
}

func TestParseItemsEqualsEncodingJSON(t *testing.T) {
	items := benchItems(250)
	body := renderReply(items)
	r, err := ParseReply(body)
	if err != nil || r.ID != "corr-1" || r.Error != nil {
		t.Fatalf("reply: %+v, %v", r, err)
	}
	if _, ok := fastItems(r.Result); !ok {
		t.Fatal("the fast path declined the server's own rendering")
	}
	got, err := ParseItems(r.Result)
	if err != nil {
		t.Fatal(err)
	}
	want, err := slowItems(r.Result)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("fast and encoding/json decodings differ")
	}
	for i := range items {
		if !reflect.DeepEqual(got[i], items[i]) {
			t.Fatalf("item %d: decoded %+v, rendered %+v", i, got[i], items[i])
		}
	}
	if one, ok := fastItemsReply(body); !ok || !reflect.DeepEqual(one, want) {
		t.Fatalf("the one-pass path declined the server's own rendering (%v) or decoded it differently", ok)
	}
	// A reply the one-pass path declines gives what ParseReply and ParseItems give.
	for _, in := range []string{`{"result":null,"id":"c"}`, `{"id":"c"}`, `{"result":[],"result":[]}`,
		`{"error":{"type":"Busy","message":"m","retryAfterMs":5},"id":"c"}`, `{"result":[{}]}`, `[]`} {
		items, e, err := ParseItemsReply([]byte(in))
		r, rerr := ParseReply([]byte(in))
		var want []domain.ItemMetadata
		var werr error
		if rerr == nil && r.Error == nil {
			want, werr = ParseItems(r.Result)
		}
		if (err == nil) != (rerr == nil && werr == nil) || !reflect.DeepEqual(e, r.Error) || !reflect.DeepEqual(items, want) {
			t.Errorf("%s: ParseItemsReply %+v, %v, %v; ParseReply then ParseItems %+v, %v, %v, %v", in, items, e, err, want, r.Error, rerr, werr)
		}
	}
	// What the fast path declines still decodes, or fails, as encoding/json does.
	for _, in := range []string{`null`, `[]`, `[null]`, `[{"version":1}]`, `[{}]`,
		`[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05.006Z","isFolder":false,"filename":"a","Filename":"b"}]`,
		`[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05.006+02:00","isFolder":false,"filename":"a\u00e9","chunks":null,"deviceId":null,"mimetype":null}]`,
		`[{"version":1,"status":"NEW","modifiedAt":"yesterday","isFolder":false,"filename":"a"}]`,
		`[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05Z","isFolder":false,"filename":"a","deviceId":"nope"}]`,
	} {
		got, gerr := ParseItems([]byte(in))
		want, werr := slowItems([]byte(in))
		if (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) && gerr == nil {
			t.Errorf("%s: ParseItems %+v, %v; encoding/json %+v, %v", in, got, gerr, want, werr)
		}
	}
}

var fastItemSeeds = []string{
	`[{"id":1,"tempId":null,"version":1,"deviceId":"6ba7b810-9dad-11d1-80b4-00c04fd430c8","workspaceId":null,"parentId":null,"parentVersion":2,"status":"NEW","modifiedAt":"2026-01-02T03:04:05.006Z","checksum":5,"chunks":["a","b"],"size":7,"isFolder":false,"filename":"x","mimetype":"text/plain"}]`,
	`[{"version":3,"status":"DELETED","modifiedAt":"2026-01-02T03:04:05Z","isFolder":true,"filename":"f","extra":{"a":[1,2.5e3,true]}}]`,
	`[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05.1234+01:00","isFolder":false,"filename":"x","version":2}]`,
	`[{"VERSION":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05Z","isFolder":false,"filename":"x"}] `,
	`[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05Z","isFolder":false,"filename":"x","deviceId":"6BA7B810-9DAD-11D1-80B4-00C04FD430C8"}]`,
	`{"result":[],"id":"c","idOmq":"ISyncService"}`,
	`{"result":null,"error":null,"id":null}`,
	`{"result":[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05Z","isFolder":false,"filename":"x"}],"result":[]}`,
	`{"id":"c","result":[{"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05Z","isFolder":false,"filename":"x"}],"Error":null}`,
	`{"error":{"type":"Busy","message":"m","retryAfterMs":5},"id":"c"}`,
	`{"result":{"a":1} ,"id":"c","ID":"d"}`,
}

// FuzzFastItemsMatch holds ParseItems' fast path to encoding/json followed by ToItem:
// whatever it accepts decodes to exactly their result.
func FuzzFastItemsMatch(f *testing.F) {
	f.Add(renderReply(benchItems(3)))
	f.Add([]byte(strings.TrimSuffix(strings.TrimPrefix(string(renderReply(benchItems(3))), `{"result":`), `,"id":"corr-1","idOmq":"ISyncService"}`)))
	for _, s := range fastItemSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if fast, ok := fastItems(data); ok {
			slow, err := slowItems(data)
			if err != nil {
				t.Fatalf("%q: the fast path accepted it, the slow path refuses it: %v", data, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: the fast path decoded %+v, the slow path %+v", data, fast, slow)
			}
		}
		if fast, ok := fastItemsReply(data); ok {
			var r Reply
			if err := json.Unmarshal(data, &r); err != nil || r.Error != nil {
				t.Fatalf("%q: the one-pass path accepted the reply, encoding/json gives error %v, answer error %v", data, err, r.Error)
			}
			slow, err := slowItems(r.Result)
			if err != nil {
				t.Fatalf("%q: the one-pass path accepted it, the slow path refuses its result: %v", data, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: the one-pass path decoded %+v, the slow path %+v", data, fast, slow)
			}
		}
		if fast, ok := fastReply(data); ok {
			var slow Reply
			if err := json.Unmarshal(data, &slow); err != nil {
				t.Fatalf("%q: the fast path accepted the reply, encoding/json refuses it: %v", data, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: the fast path decoded %+v, encoding/json %+v", data, fast, slow)
			}
		}
	})
}

// BenchmarkClientDecode is what a device does with a getChanges reply of 10,000 and
// 100,000 items (docs/benchmarks.md): the envelope, then the items, through
// encoding/json and ToItem (the client before) or ParseReply and ParseItems.
func BenchmarkClientDecode(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		body := renderReply(benchItems(n))
		b.Run(fmt.Sprintf("encoding-json/%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				var r struct {
					Result json.RawMessage `json:"result"`
					Error  *Error          `json:"error"`
					ID     string          `json:"id"`
				}
				if err := json.Unmarshal(body, &r); err != nil {
					b.Fatal(err)
				}
				if items, err := slowItems(r.Result); err != nil || len(items) != n {
					b.Fatal(len(items), err)
				}
			}
		})
		b.Run(fmt.Sprintf("fast/%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				r, err := ParseReply(body)
				if err != nil {
					b.Fatal(err)
				}
				if items, err := ParseItems(r.Result); err != nil || len(items) != n {
					b.Fatal(len(items), err)
				}
			}
		})
		b.Run(fmt.Sprintf("one-pass/%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if items, e, err := ParseItemsReply(body); err != nil || e != nil || len(items) != n {
					b.Fatal(len(items), e, err)
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time (user and system, every thread: the garbage
// collector's too) per operation from now until the returned function is called: on a
// machine other work shares, a steadier figure than the wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64((cpu()-start).Milliseconds())/float64(b.N), "cpu-ms/op") }
}
