package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// collector gathers subscription batches; safe for concurrent use.
type collector struct {
	mu     sync.Mutex
	events []eventstore.RecordedEvent
	err    error
}

func (c *collector) handle(_ context.Context, batch []eventstore.RecordedEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(batch) == 0 {
		c.err = errors.New("subscription delivered an empty batch")
		return c.err
	}
	for _, e := range batch {
		if n := len(c.events); n > 0 && !c.events[n-1].Position.Less(e.Position) {
			c.err = fmt.Errorf("subscription delivered %s after %s", e.Position, c.events[n-1].Position)
			return c.err
		}
		c.events = append(c.events, e)
	}
	return nil
}

func (c *collector) ids() []uuid.UUID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uuid.UUID, len(c.events))
	for i, e := range c.events {
		out[i] = e.ID
	}
	return out
}

func (c *collector) waitFor(t *testing.T, want []uuid.UUID) {
	t.Helper()
	deadline := time.Now().Add(visibleTimeout)
	for {
		got := c.ids()
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > len(want) {
			t.Fatalf("subscription delivered %d events, want %d", len(got), len(want))
		}
		if len(got) == len(want) {
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("subscription event %d is %s, want %s", i, got[i], want[i])
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription delivered %d of %d events after %v", len(got), len(want), visibleTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func idsOf(rs []eventstore.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// subscribe runs Subscribe in a goroutine. stop cancels it and returns its error;
// finished is closed when it has returned by itself or by stop.
func subscribe(t *testing.T, s eventstore.Store, from eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) (stop func() error, finished <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctxT(t))
	fin := make(chan struct{})
	var err error
	go func() {
		defer close(fin)
		err = s.Subscribe(ctx, from, handle)
	}()
	stop = func() error {
		cancel()
		select {
		case <-fin:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("subscription did not return within 10s of cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop, fin
}

func testSubscribeCatchUpThenLive(t *testing.T, s eventstore.Store) {
	var want []eventstore.Record
	for i := range 5 {
		b := recs(1+i%2, "old")
		mustAppend(t, s, fmt.Sprintf("s%d", i%2), eventstore.Any(), b...)
		want = append(want, b...)
	}
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.waitFor(t, idsOf(want))
	for i := range 6 {
		b := recs(1+i%3, "live")
		mustAppend(t, s, fmt.Sprintf("s%d", i%3), eventstore.Any(), b...)
		want = append(want, b...)
	}
	c.waitFor(t, idsOf(want))
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe after cancel returned %v, want context.Canceled", err)
	}
}

func testSubscribeResume(t *testing.T, s eventstore.Store) {
	all := recs(9, "r")
	for i, r := range all {
		mustAppend(t, s, fmt.Sprintf("s%d", i%3), eventstore.Any(), r)
	}
	// The first subscriber stops itself after 4 events, checkpointing the last it handled.
	errStop := errors.New("stop here")
	var checkpoint eventstore.Position
	handled := 0
	err := s.Subscribe(ctxT(t), eventstore.Start, func(_ context.Context, batch []eventstore.RecordedEvent) error {
		for _, e := range batch {
			if handled == 4 {
				return errStop
			}
			if e.ID != all[handled].ID {
				return fmt.Errorf("event %d is %s, want %s", handled, e.ID, all[handled].ID)
			}
			handled++
			checkpoint = e.Position
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("first subscription returned %v, want the handler's error", err)
	}
	// Resume from the checkpoint: exactly the rest, then live events.
	c := &collector{}
	stop, _ := subscribe(t, s, checkpoint, c.handle)
	c.waitFor(t, idsOf(all[4:]))
	more := rec("T", "after resume")
	mustAppend(t, s, "s0", eventstore.Any(), more)
	c.waitFor(t, append(idsOf(all[4:]), more.ID))
	stop()
}

func testSubscribeHeldTransaction(t *testing.T, s eventstore.Store) {
	h := holder(t, s)
	first := rec("T", "first")
	mustAppend(t, s, "a", eventstore.Any(), first)
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.waitFor(t, []uuid.UUID{first.ID})

	held := rec("T", "held")
	commit := hold(t, h, "held-stream", held)
	later := rec("T", "later")
	mustAppend(t, s, "b", eventstore.Any(), later)
	// Give the subscription several polls to (wrongly) deliver the later event.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := c.ids(); len(got) != 1 {
			t.Fatalf("subscription delivered %v while an earlier append was open", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	c.waitFor(t, []uuid.UUID{first.ID, held.ID, later.ID})
	stop()
}

func testSubscribeHandlerError(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), recs(3, "h")...)
	boom := errors.New("boom")
	calls := 0
	err := s.Subscribe(ctxT(t), eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("subscribe returned %v, want the handler's error", err)
	}
	if calls != 1 {
		t.Fatalf("handler called %d times after failing, want 1", calls)
	}

	// A live event reaching a failing handler stops the subscription too.
	stop, done := subscribe(t, s, eventstore.Start, func(_ context.Context, batch []eventstore.RecordedEvent) error {
		for _, e := range batch {
			if e.StreamVersion == 4 {
				return boom
			}
		}
		return nil
	})
	mustAppend(t, s, "s", eventstore.Exact(3), rec("T", "4"))
	select {
	case <-done:
		if err := stop(); !errors.Is(err, boom) {
			t.Fatalf("subscribe returned %v, want the handler's error", err)
		}
	case <-time.After(visibleTimeout):
		stop()
		t.Fatal("subscription did not stop on the handler's error")
	}
}

func testSubscribeCancel(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), rec("T", "1"))
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.idsOrWait(t)
	began := time.Now()
	err := stop()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe returned %v after cancel, want context.Canceled", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("subscribe took %v to return after cancel", d)
	}

	// An already-cancelled context returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Subscribe(ctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe with a cancelled context returned %v", err)
	}
}

// idsOrWait waits for the first delivered event and returns its id.
func (c *collector) idsOrWait(t *testing.T) uuid.UUID {
	t.Helper()
	deadline := time.Now().Add(visibleTimeout)
	for time.Now().Before(deadline) {
		if ids := c.ids(); len(ids) > 0 {
			return ids[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("subscription delivered nothing")
	return uuid.Nil
}
