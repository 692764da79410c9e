package storetest

import (
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// testCountAfter: eventstore.CountAfter (the store's LagReader, or the bounded-read
// fallback) counts what ReadAll would return after a position, up to the limit, with
// the first event's RecordedAt, and follows ReadAll's visibility rule: nothing past an
// append still open.
func testCountAfter(t *testing.T, s eventstore.Store) {
	ctx := ctxT(t)
	rs := sized(1000, 1000, 5000, -1000, 1000, 1000)
	mustAppend(t, s, "count-a", eventstore.NoStream(), rs[:3]...)
	mustAppend(t, s, "count-b", eventstore.NoStream(), rs[3:]...)
	all := readAllUntil(t, s, len(rs), 100)
	for from := -1; from < len(all); from++ {
		pos := eventstore.Start
		if from >= 0 {
			pos = all[from].Position
		}
		for _, limit := range []int{1, 2, 5, 100} {
			n, oldest, err := eventstore.CountAfter(ctx, s, pos, limit)
			if err != nil {
				t.Fatalf("count after #%d limit %d: %v", from, limit, err)
			}
			page, err := s.ReadAll(ctx, pos, limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := min(limit, len(all)-from-1); n != want || n != len(page) {
				t.Fatalf("count after #%d limit %d: %d, want %d (ReadAll: %d)", from, limit, n, want, len(page))
			}
			var want time.Time
			if n > 0 {
				want = all[from+1].RecordedAt
			}
			if !oldest.Equal(want) {
				t.Fatalf("count after #%d limit %d: oldest %v, want %v", from, limit, oldest, want)
			}
		}
	}
	h, ok := s.(Holder)
	if !ok {
		return
	}
	commit := hold(t, h, "count-held", rec("T", "held"))
	mustAppend(t, s, "count-c", eventstore.Any(), rec("T", "later"))
	last := all[len(all)-1].Position
	n, _, err := eventstore.CountAfter(ctx, s, last, 100)
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.ReadAll(ctx, last, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(page) || n != 0 {
		t.Fatalf("count after the last visible event with an append still open: %d (ReadAll: %d), want 0", n, len(page))
	}
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	readAllUntil(t, s, len(all)+2, 100)
	if n, _, err := eventstore.CountAfter(ctx, s, last, 100); err != nil || n != 2 {
		t.Fatalf("count after the held append committed: %d, %v; want 2", n, err)
	}
}
