package wire_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// marshalledNotify is what the server sent before rendering by hand: the wire structs,
// json.Marshal.
func marshalledNotify(t testing.TB, eventID string, c domain.Committed) []byte {
	b, err := json.Marshal(wire.Event{Method: wire.MethodNotifyCommit, Params: []wire.CommitNotification{wire.FromCommitted(c)},
		ID: eventID, Async: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodeNotifyCommitIsTheMarshalledEvent(t *testing.T) {
	file, failed := gFile(), gFile()
	failed.Chunks = nil // a failed item whose long chunk list the domain left out: null
	odd := gFile()
	odd.Filename, odd.Chunks = "<&>\"\\\u2028\xff\x00", []string{"", "\xe2\x80"}
	c := domain.Committed{WorkspaceID: uuid.New(), WorkspaceVersion: 1<<63 - 1, RequestID: "r <&> \"\\\u2029\xfe",
		UserID: uuid.New(), DeviceID: uuid.New(), LimitQuota: -1, UsedQuota: 1 << 40, WorkspaceUsed: 7,
		CommittedAt: time.Date(2026, 12, 6, 11, 59, 59, 999999999, time.FixedZone("x", 5*3600+1800)),
		Items: []domain.ItemOutcome{
			{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: new(gFolder())},
			{CommittedVersion: 3, Succeeded: true, Metadata: &file},
			{CommittedVersion: 2, Reason: domain.Reason("wrongVersion"), Metadata: &failed},
			{CommittedVersion: 2, Reason: domain.Reason("wrongVersion"), Metadata: new(gFile())},
			{CommittedVersion: -5, Reason: domain.Reason("<x>")},
			{CommittedVersion: 0, Succeeded: true, Metadata: &odd},
			{Succeeded: true, Metadata: &domain.ItemMetadata{}}, // nil chunks on success: []
		}}
	for name, tc := range map[string]struct {
		id string
		c  domain.Committed
	}{
		"mixed":    {"d5858974-7b85-516a-b8fa-0365d23c83ff", c},
		"no items": {"", domain.Committed{}},
		"odd id":   {"\"<\u2028\xff", domain.Committed{Items: []domain.ItemOutcome{}}},
	} {
		got, err := wire.EncodeNotifyCommit(tc.id, tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if want := marshalledNotify(t, tc.id, tc.c); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		if got := wire.AppendNotifyCommit([]byte("prefix"), tc.id, &tc.c); !bytes.Equal(got[6:], marshalledNotify(t, tc.id, tc.c)) {
			t.Errorf("%s: AppendNotifyCommit differs: %s", name, got)
		}
	}
}

func FuzzEncodeNotifyCommit(f *testing.F) {
	f.Add("req-1", "report.pdf", "chk-a", "", int64(3), true, false, int64(1700000000123456789))
	f.Add("<&>\u2028\xff", "\x00", "\"", "wrongVersion", int64(-1), false, true, int64(-1))
	f.Fuzz(func(t *testing.T, req, name, chunk, reason string, v int64, ok, nilChunks bool, at int64) {
		m := gFile()
		m.Filename, m.Chunks, m.Version, m.ModifiedAt = name, []string{chunk}, v, time.Unix(0, at)
		if nilChunks {
			m.Chunks = nil
		}
		c := domain.Committed{WorkspaceID: uuid.New(), WorkspaceVersion: v, RequestID: req, UserID: uuid.New(),
			DeviceID: uuid.New(), CommittedAt: time.Unix(0, at), LimitQuota: at, UsedQuota: v,
			Items: []domain.ItemOutcome{{CommittedVersion: v, Succeeded: ok, Reason: domain.Reason(reason), Metadata: &m},
				{CommittedVersion: at, Succeeded: !ok, Reason: domain.Reason(reason)}}}
		got, _ := wire.EncodeNotifyCommit(req, c)
		if want := marshalledNotify(t, req, c); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func TestVoidResponseIsTheMarshalledResponse(t *testing.T) {
	for _, id := range []string{"corr-commit-1", "", "<&>\"\\\u2028\xff\x01"} {
		got, err := wire.EncodeResponse(id, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(wire.Response{ID: id, IDOmq: wire.IDOmq})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q:\n got %s\nwant %s", id, got, want)
		}
	}
}

// go test -run '^$' -bench EncodeNotifyCommit -benchmem ./transport/wire/
// A 1-item commit's notification: json.Marshal of the wire structs (what the server did)
// against the hand rendering.
func BenchmarkEncodeNotifyCommit(b *testing.B) {
	m := gFile()
	c := domain.Committed{WorkspaceID: uuid.New(), WorkspaceVersion: 17, RequestID: "laptop-1700000000000", UserID: uuid.New(),
		DeviceID: uuid.New(), CommittedAt: time.Now(), LimitQuota: 1 << 30, UsedQuota: 600000,
		Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &m}}}
	id := uuid.NewString()
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			marshalledNotify(b, id, c)
		}
	})
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.EncodeNotifyCommit(id, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
