package domain

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// checkEncodeCommitted holds Encode's rendering of c to json.Marshal's: the same bytes,
// or both failing.
func checkEncodeCommitted(t *testing.T, c Committed) {
	t.Helper()
	want, wantErr := json.Marshal(c)
	typ, got, err := Encode(c)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Encode error %v, json.Marshal error %v", err, wantErr)
	}
	if err == nil && (typ != TypeCommitted || !bytes.Equal(got, want)) {
		t.Fatalf("Encode gave %s %s\njson.Marshal %s", typ, got, want)
	}
}

func TestEncodeCommittedIsMarshal(t *testing.T) {
	id, parent := ItemID(4002), ItemID(-1)
	full := ItemMetadata{ID: &id, TempID: new(int64(-1 << 63)), Version: 1<<63 - 1, DeviceID: uuid.New(), WorkspaceID: uuid.New(),
		ParentID: &parent, ParentVersion: new(int64(0)), Status: "CHANGED <&>", Checksum: -5,
		ModifiedAt: time.Date(2026, 11, 30, 5, 5, 6, 789000000, time.FixedZone("", 3600+1800+7)),
		Chunks:     []string{"", "chk\"\\\u2028\u2029\xff\x00\x1f\x7f é 🎉"}, Size: 3, IsFolder: true,
		Filename: "<b>&amp;</b>\n\t\r\b\f", Mimetype: "\xe2\x80"}
	bare := ItemMetadata{}
	c := Committed{PrevHash: "abc", WorkspaceID: uuid.New(), WorkspaceVersion: 17, RequestID: "r<&>\u2028\xfe", UserID: uuid.New(),
		DeviceID: uuid.New(), CommittedAt: time.Date(2026, 12, 6, 11, 0, 0, 1, time.UTC), LimitQuota: -1, UsedQuota: 1 << 40,
		WorkspaceUsed: 9, Items: []ItemOutcome{
			{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &full},
			{CommittedVersion: 2, Reason: "wrongVersion", Metadata: &bare},
			{CommittedVersion: -3, Reason: "<x>"},
			{Succeeded: true, Metadata: &ItemMetadata{Chunks: []string{}}},
		}}
	checkEncodeCommitted(t, c)
	checkEncodeCommitted(t, Committed{})
	checkEncodeCommitted(t, Committed{Items: []ItemOutcome{}})
	for _, at := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), // years json refuses
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)), time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -24*3600+1)),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -23*3600-59*60-59)), time.Date(2026, 6, 1, 0, 0, 0, 0, time.Local),
	} {
		m := full
		m.ModifiedAt = at
		checkEncodeCommitted(t, Committed{CommittedAt: time.Now(), Items: []ItemOutcome{{Metadata: &m}}})
		checkEncodeCommitted(t, Committed{CommittedAt: at})
	}
}

func FuzzEncodeCommitted(f *testing.F) {
	f.Add("r-1", "report.pdf", "chk-a", "", int64(3), true, false, int64(1700000000123456789), 3600)
	f.Add("<&>\u2028\xff", "\x00", "\"", "wrongVersion", int64(-1), false, true, int64(-1), -7)
	f.Fuzz(func(t *testing.T, req, name, chunk, reason string, v int64, ok, nilChunks bool, at int64, zone int) {
		when := time.Unix(0, at).In(time.FixedZone("", zone))
		m := ItemMetadata{ID: (*ItemID)(&v), TempID: &at, Version: v, DeviceID: uuid.New(), Status: Status(reason),
			ModifiedAt: when, Chunks: []string{chunk, name}, Filename: name, Mimetype: chunk, IsFolder: ok}
		if nilChunks {
			m.Chunks = nil
		}
		checkEncodeCommitted(t, Committed{PrevHash: name, RequestID: req, CommittedAt: when, WorkspaceVersion: v,
			Items: []ItemOutcome{{CommittedVersion: v, Succeeded: ok, Stored: !ok, Reason: Reason(reason), Metadata: &m}, {}}})
	})
}

// go test -run '^$' -bench EncodeCommitted -benchmem ./domain/
// A 1-item commit's stored body: json.Marshal (what Encode did) against Encode now.
func BenchmarkEncodeCommitted(b *testing.B) {
	id := ItemID(4002)
	m := ItemMetadata{ID: &id, Version: 3, DeviceID: uuid.New(), WorkspaceID: uuid.New(), Status: StatusChanged,
		ModifiedAt: time.Now(), Checksum: 99, Chunks: []string{"chk-a", "chk-b"}, Size: 524288, Filename: "report.pdf",
		Mimetype: "application/pdf"}
	c := Committed{PrevHash: "3f2a", WorkspaceID: uuid.New(), WorkspaceVersion: 17, RequestID: "laptop-1700000000000",
		UserID: uuid.New(), DeviceID: uuid.New(), CommittedAt: time.Now(), LimitQuota: 1 << 30, UsedQuota: 600000,
		Items: []ItemOutcome{{CommittedVersion: 3, Succeeded: true, Stored: true, Metadata: &m}}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Encode(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzCommittedRoundTrip holds Decode(Encode(c)) to c for every commit the service can
// decide (strings valid UTF-8, as decoded requests and stored events give them), times
// compared by instant (all that the read models store): the service hands c itself to
// the inline hook (eventstore.Record.Value) as the event its bytes encode.
func FuzzCommittedRoundTrip(f *testing.F) {
	f.Add("r-1", "report.pdf", "chk-a", "", int64(3), true, false, int64(1700000000123456789), 3600)
	f.Add("<&>\u2028é", "\x00", "\"", "wrongVersion", int64(-1), false, true, int64(-1), -7)
	f.Fuzz(func(t *testing.T, req, name, chunk, reason string, v int64, ok, nilChunks bool, at int64, zone int) {
		// A decided commit holds valid UTF-8 only (requests are decoded, invalid bytes
		// replaced): so do these.
		req, name, chunk, reason = validUTF8(req), validUTF8(name), validUTF8(chunk), validUTF8(reason)
		// Offsets in whole minutes, as JSON gives them (RFC 3339 has no seconds of offset).
		when := time.Unix(0, at).In(time.FixedZone("", zone/60*60))
		m := ItemMetadata{ID: (*ItemID)(&v), TempID: &at, Version: v, DeviceID: uuid.New(), Status: Status(reason),
			ModifiedAt: when, Chunks: []string{chunk, name}, Filename: name, Mimetype: chunk, IsFolder: ok}
		if nilChunks {
			m.Chunks = nil
		}
		if ok {
			m.ParentID, m.ParentVersion = (*ItemID)(&at), &v
		}
		c := Committed{PrevHash: name, RequestID: req, CommittedAt: when.UTC(), WorkspaceVersion: v, WorkspaceID: uuid.New(),
			UserID: uuid.New(), DeviceID: uuid.New(), LimitQuota: at, UsedQuota: v, WorkspaceUsed: -v,
			Items: []ItemOutcome{{CommittedVersion: v, Succeeded: ok, Stored: !ok, Reason: Reason(reason), Metadata: &m},
				{}, {Metadata: &ItemMetadata{Chunks: []string{}}}}}
		typ, data, err := Encode(c)
		if err != nil {
			t.Fatalf("Encode of a commit the service can decide: %v", err)
		}
		got, err := Decode(typ, data)
		if err != nil {
			t.Fatalf("Decode(Encode(c)): %v", err)
		}
		d, isCommit := got.(Committed)
		if !isCommit {
			t.Fatalf("Decode(Encode(c)) is %T", got)
		}
		if !d.CommittedAt.Equal(c.CommittedAt) || !d.Items[0].Metadata.ModifiedAt.Equal(m.ModifiedAt) {
			t.Fatalf("times %v, %v decoded as %v, %v", c.CommittedAt, m.ModifiedAt, d.CommittedAt, d.Items[0].Metadata.ModifiedAt)
		}
		// Compared by instant above; the rest exactly.
		d.CommittedAt, d.Items[0].Metadata.ModifiedAt = c.CommittedAt, m.ModifiedAt
		if !reflect.DeepEqual(d, c) {
			t.Fatalf("Decode(Encode(c)) differs from c:\n got %+v\nwant %+v", d, c)
		}
	})
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
