package follow

import (
	"context"
	"errors"
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
