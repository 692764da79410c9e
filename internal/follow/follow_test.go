package follow

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// eventually polls fn until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appendN appends n events of size bytes each to s, spread over a few streams.
func appendN(t *testing.T, s eventstore.Store, n, size int) {
	t.Helper()
	for i := range n {
		rec := eventstore.Record{ID: uuid.New(), Type: "t", Data: make([]byte, size)}
		if _, err := s.Append(context.Background(), fmt.Sprintf("s-%d", i%3), eventstore.Any(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

// allPositions reads every position of the store's global order.
func allPositions(t *testing.T, s eventstore.Store) []eventstore.Position {
	t.Helper()
	evs, err := s.ReadAll(context.Background(), eventstore.Start, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]eventstore.Position, len(evs))
	for i := range evs {
		out[i] = evs[i].Position
	}
	return out
}

// Two followers hold the same checkpoint row, as a deposed leader still finishing a
// batch and its successor do: the checkpoint never moves back. The deposed one loaded the
// checkpoint at the start and saves its first batch only after the successor has
// finished everything; without the CAS's WHERE (a plain upsert) the row goes back to
// that batch's end.
func TestCheckpointNeverRewindsUnderTwoLeaders(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE cps (name text PRIMARY KEY, commit_pos bigint NOT NULL,
		prepare_pos bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	table := Table{Name: "cps"}
	store := memstore.New()
	defer store.Close()
	appendN(t, store, 50, 10)
	all := allPositions(t, store)
	last := all[len(all)-1]

	// The checkpoint as seen after every save, by either leader.
	var mu sync.Mutex
	var seen []eventstore.Position
	newLeader := func() *Follower {
		f, err := New(Config{Name: "f", Reader: StoreReader{Store: store}, BatchSize: 7,
			Load: func(ctx context.Context) (eventstore.Position, error) { return table.Load(ctx, db, "f") }})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	entered := make(chan struct{}, 1)
	handler := func(gate <-chan struct{}) Handler {
		return func(ctx context.Context, batch []eventstore.RecordedEvent) (int, error) {
			if gate != nil {
				select {
				case entered <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			tx, err := db.Begin(ctx)
			if err != nil {
				return 0, err
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := table.Save(ctx, tx, "f", batch[len(batch)-1].Position); err != nil {
				return 0, err
			}
			if err := tx.Commit(ctx); err != nil {
				return 0, err
			}
			p, err := table.Load(ctx, db, "f")
			if err != nil {
				return 0, err
			}
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
			return len(batch), nil
		}
	}
	gate := make(chan struct{})
	deposed, successor := newLeader(), newLeader()
	dctx, stopDeposed := context.WithCancel(ctx)
	defer stopDeposed()
	deposedDone := make(chan error, 1)
	go func() { deposedDone <- deposed.Run(dctx, handler(gate)) }()
	// The deposed leader has loaded Start and waits in its first batch.
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the deposed leader never got its first batch")
	}
	sctx, stopSuccessor := context.WithCancel(ctx)
	successorDone := make(chan error, 1)
	go func() { successorDone <- successor.Run(sctx, handler(nil)) }()
	eventually(t, 20*time.Second, func() error {
		if p, _ := table.Load(ctx, db, "f"); p != last {
			return fmt.Errorf("successor at %s, want %s", p, last)
		}
		return nil
	})
	stopSuccessor()
	<-successorDone
	close(gate) // the deposed leader saves its late batch now
	eventually(t, 10*time.Second, func() error {
		if deposed.Status().Handled == 0 {
			return fmt.Errorf("the deposed leader has not saved its late batch")
		}
		return nil
	})
	stopDeposed()
	<-deposedDone
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seen); i++ {
		if seen[i].Less(seen[i-1]) {
			t.Fatalf("checkpoint moved back from %s to %s (saves seen: %v)", seen[i-1], seen[i], seen)
		}
	}
	if p, err := table.Load(ctx, db, "f"); err != nil || p != last {
		t.Fatalf("checkpoint %s (%v) after both leaders, want %s", p, err, last)
	}
}
