package storetest

import (
	"bytes"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// sized returns records of the given Data sizes; a negative size puts |size| bytes in
// Metadata instead (with one byte of Data), so that both count towards the bound.
func sized(sizes ...int) []eventstore.Record {
	out := make([]eventstore.Record, len(sizes))
	for i, n := range sizes {
		r := eventstore.Record{ID: uuid.New(), Type: "Sized", Data: bytes.Repeat([]byte{'a' + byte(i)}, max(n, 1))}
		if n < 0 {
			r.Metadata = bytes.Repeat([]byte{'m'}, -n)
		}
		out[i] = r
	}
	return out
}

// checkBoundedPage checks one bounded page: at most limit events, at least one when any
// is available, and within maxBytes unless it is a single event.
func checkBoundedPage(t *testing.T, what string, page []eventstore.RecordedEvent, limit int, maxBytes int64, available bool) {
	t.Helper()
	if available && len(page) == 0 {
		t.Fatalf("%s: no event although one is available", what)
	}
	if len(page) > limit {
		t.Fatalf("%s: %d events, limit %d", what, len(page), limit)
	}
	if len(page) > 1 && eventstore.Bytes(page) > maxBytes {
		t.Fatalf("%s: %d events of %d bytes, bound %d", what, len(page), eventstore.Bytes(page), maxBytes)
	}
}

func boundedReader(t *testing.T, s eventstore.Store) {
	t.Helper()
	if _, ok := s.(eventstore.BoundedReader); !ok {
		t.Skip("store does not implement eventstore.BoundedReader (the helpers read by count and trim)")
	}
}

// testReadStreamBounded: ReadStreamBounded cuts pages at the byte bound, always returns
// the first event (even one larger than the bound), counts Metadata, respects the count
// limit, and pages through the whole stream in order.
func testReadStreamBounded(t *testing.T, s eventstore.Store) {
	boundedReader(t, s)
	ctx := ctxT(t)
	rs := sized(1000, 1000, 5000, -1000, 1000, 1000)
	mustAppend(t, s, "bounded", eventstore.NoStream(), rs...)
	cases := []struct {
		from     uint64
		limit    int
		maxBytes int64
		want     int
	}{
		{1, 10, 2500, 2},   // 1000+1000, the 5000 would pass the bound
		{1, 10, 2000, 2},   // exactly at the bound
		{1, 10, 1999, 1},   // one event
		{3, 10, 100, 1},    // the first event is returned though larger than the bound
		{4, 10, 2002, 2},   // 1001 (Metadata counts) + 1000
		{4, 10, 2000, 1},   // 1001 + 1000 passes the bound
		{1, 3, 1 << 30, 3}, // the count limit still applies
		{7, 10, 100, 0},    // past the end
	}
	for _, c := range cases {
		page, err := eventstore.ReadStreamBounded(ctx, s, "bounded", c.from, c.limit, c.maxBytes)
		if err != nil {
			t.Fatalf("read stream from %d limit %d bytes %d: %v", c.from, c.limit, c.maxBytes, err)
		}
		checkBoundedPage(t, "read stream", page, c.limit, c.maxBytes, c.from <= 6)
		if len(page) != c.want {
			t.Fatalf("read stream from %d limit %d bytes %d: %d events, want %d", c.from, c.limit, c.maxBytes, len(page), c.want)
		}
		for i, e := range page {
			checkSame(t, e, rs[int(c.from)-1+i], "bounded", c.from+uint64(i))
		}
	}
	// Paging by bytes reads everything once, in order.
	var got []eventstore.RecordedEvent
	for from := uint64(1); ; {
		page, err := eventstore.ReadStreamBounded(ctx, s, "bounded", from, 100, 2500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		checkBoundedPage(t, "read stream", page, 100, 2500, true)
		got = append(got, page...)
		from = page[len(page)-1].StreamVersion + 1
	}
	if len(got) != len(rs) {
		t.Fatalf("paging by bytes read %d events, want %d", len(got), len(rs))
	}
	for i, e := range got {
		checkSame(t, e, rs[i], "bounded", uint64(i+1))
	}
}

// testReadAllBounded: the same rules for ReadAllBounded over the global order.
func testReadAllBounded(t *testing.T, s eventstore.Store) {
	boundedReader(t, s)
	ctx := ctxT(t)
	rs := sized(1000, 1000, 5000, -1000, 1000, 1000)
	mustAppend(t, s, "bounded-a", eventstore.NoStream(), rs[:3]...)
	mustAppend(t, s, "bounded-b", eventstore.NoStream(), rs[3:]...)
	all := readAllUntil(t, s, len(rs), 100) // waits until every event is visible
	cases := []struct {
		from     int // index in all of the event to read after; -1: Start
		limit    int
		maxBytes int64
		want     int
	}{
		{-1, 10, 2500, 2},
		{-1, 10, 1999, 1},
		{1, 10, 100, 1},  // after the second event: the 5000-byte one alone
		{2, 10, 2002, 2}, // 1001 + 1000
		{-1, 4, 1 << 30, 4},
		{5, 10, 100, 0},
	}
	for _, c := range cases {
		from := eventstore.Start
		if c.from >= 0 {
			from = all[c.from].Position
		}
		page, err := eventstore.ReadAllBounded(ctx, s, from, c.limit, c.maxBytes)
		if err != nil {
			t.Fatalf("read all after %s limit %d bytes %d: %v", from, c.limit, c.maxBytes, err)
		}
		checkBoundedPage(t, "read all", page, c.limit, c.maxBytes, c.from < 5)
		if len(page) != c.want {
			t.Fatalf("read all after #%d limit %d bytes %d: %d events, want %d", c.from, c.limit, c.maxBytes, len(page), c.want)
		}
		for i, e := range page {
			if e.ID != all[c.from+1+i].ID {
				t.Fatalf("read all after #%d: event %d is %s, want %s", c.from, i, e.ID, all[c.from+1+i].ID)
			}
		}
	}
	var got []eventstore.RecordedEvent
	for from := eventstore.Start; ; {
		page, err := eventstore.ReadAllBounded(ctx, s, from, 100, 2500)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		checkBoundedPage(t, "read all", page, 100, 2500, true)
		got = append(got, page...)
		from = page[len(page)-1].Position
	}
	if len(got) != len(all) {
		t.Fatalf("paging by bytes read %d events, want %d", len(got), len(all))
	}
	for i := range got {
		if got[i].ID != all[i].ID || !bytes.Equal(got[i].Data, all[i].Data) || !bytes.Equal(got[i].Metadata, all[i].Metadata) {
			t.Fatalf("paging by bytes: event %d differs", i)
		}
	}
}
