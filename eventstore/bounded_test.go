package eventstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// countOnly hides the store's BoundedReader: the helpers must fall back to reading by
// count and trimming the page to the bound.
type countOnly struct{ eventstore.Store }

func TestBoundedHelpersFallBack(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	var rs []eventstore.Record
	for _, n := range []int{1000, 1000, 5000, 10} {
		rs = append(rs, eventstore.Record{ID: uuid.New(), Type: "T", Data: make([]byte, n)})
	}
	if _, err := s.Append(ctx, "s", eventstore.NoStream(), rs...); err != nil {
		t.Fatal(err)
	}
	r := countOnly{s}
	if _, ok := any(r).(eventstore.BoundedReader); ok {
		t.Fatal("countOnly must not be a BoundedReader")
	}
	for _, c := range []struct {
		from     uint64
		maxBytes int64
		want     int
	}{{1, 2500, 2}, {3, 10, 1}, {1, 0, 4}, {4, 1, 1}} {
		got, err := eventstore.ReadStreamBounded(ctx, r, "s", c.from, 10, c.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != c.want {
			t.Errorf("stream from %d bound %d: %d events, want %d", c.from, c.maxBytes, len(got), c.want)
		}
		all, err := eventstore.ReadAllBounded(ctx, r, eventstore.Start, 10, c.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if c.from == 1 && len(all) != c.want {
			t.Errorf("all bound %d: %d events, want %d", c.maxBytes, len(all), c.want)
		}
	}
}

func TestMayHaveMore(t *testing.T) {
	ev := func(n int) eventstore.RecordedEvent { return eventstore.RecordedEvent{Data: make([]byte, n)} }
	page := []eventstore.RecordedEvent{ev(10), ev(10)}
	if !eventstore.MayHaveMore(page, 2, 1<<30) {
		t.Error("a page of limit events may have more")
	}
	if eventstore.MayHaveMore(page, 3, 1<<30) {
		t.Error("a short, small page is the end")
	}
	// The bound minus the page is smaller than a record could be: the next one may have been cut.
	if !eventstore.MayHaveMore(page, 3, eventstore.MaxRecordSize+19) {
		t.Error("a page near the byte bound may have more")
	}
	if eventstore.MayHaveMore(nil, 3, 100) {
		t.Error("an empty page is the end")
	}
}
