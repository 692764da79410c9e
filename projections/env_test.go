package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

type env struct {
	dsn   string
	store *postgres.Store
	pool  *pgxpool.Pool
	q     *Queries
	log   *slog.Logger

	mu       sync.Mutex
	appended eventstore.Position // the latest position appended through append
}

// append appends the batches and remembers the last position for caughtUp.
func (e *env) append(t testing.TB, bs []batch) {
	t.Helper()
	last := appendAll(t, e.store, bs)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.appended.Less(last) {
		e.appended = last
	}
}

type tlogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	log := testLogger(t)
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, PollInterval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &env{dsn: dsn, store: store, pool: pool, q: NewQueries(pool), log: log}
}

func (e *env) projector(t testing.TB, model string, mut func(*Config)) *Projector {
	t.Helper()
	cfg := Config{Model: model, DSN: e.dsn, Pool: e.pool, Source: e.store, Logger: e.log, LeaderRetry: 50 * time.Millisecond}
	if mut != nil {
		mut(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new projector: %v", err)
	}
	return p
}

// run runs f(ctx) in the background until the returned stop is called or the test ends;
// stop returns f's error.
func run(t testing.TB, f func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("did not stop within 30s")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// projectAll runs a projector for every model until the test ends.
func (e *env) projectAll(t testing.TB) {
	for _, m := range Models() {
		p := e.projector(t, m.Name(), nil)
		run(t, p.Run)
	}
}

// caughtUp waits until the model has applied everything appended through e.append.
func (e *env) caughtUp(t testing.TB, model string) {
	t.Helper()
	e.mu.Lock()
	want := e.appended
	e.mu.Unlock()
	testenv.Eventually(t, 20*time.Second, func() error {
		cp, err := Checkpoint(context.Background(), e.pool, model)
		if err != nil {
			return err
		}
		if cp.Less(want) {
			return fmt.Errorf("%s at %s, want %s", model, cp, want)
		}
		return nil
	})
}

func (e *env) lastPosition(t testing.TB) eventstore.Position {
	t.Helper()
	// ReadAll shows an event only once every transaction older than its own has ended,
	// anywhere on the server: a long transaction of another database (a benchmark's bulk
	// load on a shared server) holds the latest appends back. Wait until it shows all
	// of them, so the position is the last append's.
	var stored int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM es_events`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	var pos eventstore.Position
	testenv.Eventually(t, time.Minute, func() error {
		pos = eventstore.Position{}
		read := 0
		for {
			evs, err := e.store.ReadAll(context.Background(), pos, 10000)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			read += len(evs)
			pos = evs[len(evs)-1].Position
		}
		if read < stored {
			return fmt.Errorf("the global order shows %d of %d events", read, stored)
		}
		return nil
	})
	return pos
}

// dump returns every row of the model's tables in schema, as JSON, in key order.
func dump(t testing.TB, pool *pgxpool.Pool, m *Model, schema string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range m.tables {
		rows, err := pool.Query(context.Background(), fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s.%s t ORDER BY %s`,
			schema, tb.name, strings.Join(tb.key, ", ")))
		if err != nil {
			t.Fatalf("dump %s.%s: %v", schema, tb.name, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out[tb.name] = append(out[tb.name], s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (e *env) verifyClean(t testing.TB, model string) VerifyResult {
	t.Helper()
	res, err := Verify(context.Background(), RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 97, Logger: e.log}, model, 20)
	if err != nil {
		t.Fatalf("verify %s: %v", model, err)
	}
	if res.Count != 0 {
		for _, d := range res.Diffs {
			t.Errorf("diff %s %s:\n live:    %s\n rebuilt: %s", d.Table, d.Key, d.Live, d.Rebuilt)
		}
		t.Fatalf("verify %s: %d differences at %s", model, res.Count, res.Position)
	}
	return res
}
