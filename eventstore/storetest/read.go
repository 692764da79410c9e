package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

func testReadStreamPaging(t *testing.T, s eventstore.Store) {
	rs := recs(10, "p")
	mustAppend(t, s, "s", eventstore.NoStream(), rs[:4]...)
	mustAppend(t, s, "other", eventstore.NoStream(), rec("T", "o"))
	mustAppend(t, s, "s", eventstore.Exact(4), rs[4:]...)

	cases := []struct {
		from  uint64
		limit int
		first uint64 // 0: empty
		n     int
	}{
		{1, 3, 1, 3}, {4, 3, 4, 3}, {7, 3, 7, 3}, {10, 3, 10, 1}, {11, 3, 0, 0},
		{0, 2, 1, 2}, {1, 100, 1, 10}, {5, 1, 5, 1}, {1000, 10, 0, 0},
	}
	for _, c := range cases {
		evs, err := s.ReadStream(ctxT(t), "s", c.from, c.limit)
		if err != nil {
			t.Fatalf("read s from %d limit %d: %v", c.from, c.limit, err)
		}
		if len(evs) != c.n {
			t.Fatalf("read s from %d limit %d: %d events, want %d", c.from, c.limit, len(evs), c.n)
		}
		for i, e := range evs {
			v := c.first + uint64(i)
			checkSame(t, e, rs[v-1], "s", v)
		}
	}
	// Paging through the whole stream.
	var got []eventstore.RecordedEvent
	for from := uint64(1); ; {
		evs, err := s.ReadStream(ctxT(t), "s", from, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		got = append(got, evs...)
		from = evs[len(evs)-1].StreamVersion + 1
	}
	if len(got) != 10 {
		t.Fatalf("paged read: %d events, want 10", len(got))
	}

	evs, err := s.ReadStream(ctxT(t), "missing", 1, 10)
	if err != nil || len(evs) != 0 {
		t.Fatalf("read missing stream: %d events, %v; want empty, nil", len(evs), err)
	}
	wantVersion(t, s, "missing", 0)
}

func testReadAllOrderAndPaging(t *testing.T, s eventstore.Store) {
	var want []uuid.UUID
	for i := range 12 {
		stream := fmt.Sprintf("s%d", i%4)
		batch := recs(1+i%3, stream)
		mustAppend(t, s, stream, eventstore.Any(), batch...)
		for _, r := range batch {
			want = append(want, r.ID)
		}
	}
	for _, page := range []int{1, 3, 7, 1000} {
		all := readAllUntil(t, s, len(want), page)
		for i, e := range all {
			if e.ID != want[i] {
				t.Fatalf("page %d: global event %d is %s, want %s", page, i, e.ID, want[i])
			}
			if i > 0 && !all[i-1].Position.Less(e.Position) {
				t.Fatalf("page %d: positions not increasing at %d: %s then %s", page, i, all[i-1].Position, e.Position)
			}
		}
		last := all[len(all)-1].Position
		evs, err := s.ReadAll(ctxT(t), last, page)
		if err != nil || len(evs) != 0 {
			t.Fatalf("read all after the last event: %d events, %v", len(evs), err)
		}
	}
	// Resuming from the middle returns exactly the rest.
	all := readAllUntil(t, s, len(want), 1000)
	rest, err := s.ReadAll(ctxT(t), all[9].Position, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != len(want)-10 || rest[0].ID != want[10] {
		t.Fatalf("read all from event 10's position: %d events, want %d starting at %s", len(rest), len(want)-10, want[10])
	}
}

func testReadAllHeldTransaction(t *testing.T, s eventstore.Store) {
	h := holder(t, s)
	ctx := ctxT(t)
	before := rec("T", "before")
	mustAppend(t, s, "a", eventstore.Any(), before)
	seen := readAllUntil(t, s, 1, 10)
	cursor := seen[0].Position

	held := rec("T", "held")
	commit := hold(t, h, "held-stream", held)
	later := rec("T", "later")
	mustAppend(t, s, "b", eventstore.Any(), later)

	// The later event is committed, the held one is not: a reader must not move past the
	// held event's place, so it sees nothing yet.
	evs, err := s.ReadAll(ctx, cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.ID == later.ID {
			t.Fatalf("read all returned the later event at %s while an earlier append was still open", e.Position)
		}
		cursor = e.Position
	}
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	var got []uuid.UUID
	deadline := time.Now().Add(visibleTimeout)
	for len(got) < 2 && time.Now().Before(deadline) {
		evs, err := s.ReadAll(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.ID)
			cursor = e.Position
		}
		if len(evs) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(got) != 2 || got[0] != held.ID || got[1] != later.ID {
		t.Fatalf("after commit the reader saw %v, want [held %s, later %s]", got, held.ID, later.ID)
	}
}

func testReadAllConcurrentWriters(t *testing.T, s eventstore.Store) {
	const writers, each = 6, 15
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Append(ctx, fmt.Sprintf("w%d", w), eventstore.Any(), recs(1+i%2, "x")...); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	want := 0
	for i := range each {
		want += 1 + i%2
	}
	want *= writers

	// A reader follows the global order while the writers run, resuming each time from
	// the last position it saw.
	seen := map[uuid.UUID]bool{}
	from := eventstore.Start
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		deadline := time.Now().Add(visibleTimeout + 10*time.Second)
		for len(seen) < want && time.Now().Before(deadline) {
			evs, err := s.ReadAll(ctx, from, 7)
			if err != nil {
				errc <- err
				return
			}
			for _, e := range evs {
				if seen[e.ID] {
					errc <- fmt.Errorf("event %s returned twice", e.ID)
					return
				}
				if !from.Less(e.Position) {
					errc <- fmt.Errorf("event at %s not after cursor %s", e.Position, from)
					return
				}
				seen[e.ID] = true
				from = e.Position
			}
			if len(evs) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	wg.Wait()
	<-readerDone
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(seen) != want {
		t.Fatalf("concurrent reader saw %d of %d events", len(seen), want)
	}
	// And the reader's view equals a fresh read of the whole order.
	all := readAllUntil(t, s, want, 1000)
	for _, e := range all {
		if !seen[e.ID] {
			t.Fatalf("the concurrent reader skipped event %s at %s", e.ID, e.Position)
		}
	}
}
