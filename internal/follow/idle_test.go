package follow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// timedReader records when each read started.
type timedReader struct {
	Reader
	mu sync.Mutex
	at []time.Time
}

func (r *timedReader) ReadAfter(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	r.mu.Lock()
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	return r.Reader.ReadAfter(ctx, from, limit, maxBytes)
}

func (r *timedReader) reads() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// A follower with Linger, woken without pause while it finds nothing (as every append
// in the process wakes it), reads no sooner than Linger after its previous read; it
// still handles what is appended meanwhile. Without Linger a wake reads at once (the
// followers on the commit path).
func TestWakesCoalescedByLinger(t *testing.T) {
	const linger = 30 * time.Millisecond
	for _, c := range []struct {
		name   string
		linger time.Duration
	}{{"linger", linger}, {"no linger", 0}} {
		t.Run(c.name, func(t *testing.T) {
			store := memstore.New()
			defer store.Close()
			r := &timedReader{Reader: StoreReader{Store: store}}
			f, err := New(Config{Name: "f", Reader: r, Linger: c.linger, PollMin: time.Second, PollMax: time.Second,
				Load: func(context.Context) (eventstore.Position, error) { return eventstore.Start, nil }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			handled := 0
			done := make(chan error, 1)
			go func() {
				done <- f.Run(ctx, func(_ context.Context, evs []eventstore.RecordedEvent) (int, error) {
					mu.Lock()
					handled += len(evs)
					mu.Unlock()
					return len(evs), nil
				})
			}()
			// Wake it without pause until it has read 6 times.
			for len(r.reads()) < 6 {
				f.Wake()
				time.Sleep(100 * time.Microsecond)
			}
			at := r.reads()
			for i := 1; i < len(at); i++ {
				gap := at[i].Sub(at[i-1])
				if c.linger > 0 && gap < c.linger {
					t.Errorf("read %d came %v after the one before, within Linger %v", i, gap, c.linger)
				}
			}
			// An event appended now is handled, woken or polled.
			if _, err := store.Append(context.Background(), "s", eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "t"}); err != nil {
				t.Fatal(err)
			}
			f.Wake()
			eventually(t, 20*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if handled != 1 {
					return errNotYet
				}
				return nil
			})
			cancel()
			<-done
		})
	}
}

var errNotYet = errors.New("not yet")

// timedStore records when each ReadAll started.
type timedStore struct {
	eventstore.AllReader
	mu sync.Mutex
	at []time.Time
}

func (s *timedStore) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.AllReader.ReadAll(ctx, from, limit)
}

func (s *timedStore) reads() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// With EmptyGap, followers that keep asking the tail's end for more while there is
// nothing read the store at most once per EmptyGap, together; an event appended
// meanwhile is still returned.
func TestTailPacesEmptyReads(t *testing.T) {
	const gap = 30 * time.Millisecond
	store := memstore.New()
	defer store.Close()
	ts := &timedStore{AllReader: store}
	tail, err := NewTail(TailConfig{Store: ts, EmptyGap: gap})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for len(ts.reads()) < 5 && ctx.Err() == nil {
				if _, err := tail.ReadAfter(ctx, eventstore.Start, 10, 1<<20); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	at := ts.reads()
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < gap {
			t.Errorf("store read %d came %v after the one before, within EmptyGap", i, d)
		}
	}
	if _, err := store.Append(ctx, "s", eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "t"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		evs, err := tail.ReadAfter(ctx, eventstore.Start, 10, 1<<20)
		if err != nil || len(evs) != 1 {
			return fmt.Errorf("read %d events (%v), want 1", len(evs), err)
		}
		return nil
	})
}

// A follower stopped by its context calls Idle once more, with a context still live,
// so that a projector stores the checkpoint move it deferred; a run that ends with its
// handler's error does not.
func TestIdleCalledOnceMoreAtStop(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	if _, err := store.Append(context.Background(), "s-1", eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "t", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	for _, stop := range []bool{true, false} {
		var mu sync.Mutex
		var calls, live int
		f, err := New(Config{Name: "f", Reader: StoreReader{Store: store}, PollMin: time.Hour, PollMax: time.Hour,
			Load: func(context.Context) (eventstore.Position, error) { return eventstore.Start, nil },
			Idle: func(ctx context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if ctx.Err() == nil {
					live++
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		failed := errors.New("handler failed")
		err = f.Run(ctx, func(_ context.Context, batch []eventstore.RecordedEvent) (int, error) {
			if stop {
				cancel() // the stop comes while the batch is handled: no empty read follows
				return len(batch), nil
			}
			return 0, failed
		})
		cancel()
		mu.Lock()
		c, l := calls, live
		mu.Unlock()
		switch {
		case stop && (!errors.Is(err, context.Canceled) || c != 1 || l != 1):
			t.Errorf("stopped: Run %v; Idle called %d times, %d with a live context; want once, live", err, c, l)
		case !stop && (!errors.Is(err, failed) || c != 0):
			t.Errorf("handler failed: Run %v; Idle called %d times, want none", err, c)
		}
	}
}
