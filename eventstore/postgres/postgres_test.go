package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/eventstore/storetest"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

var _ storetest.Holder = (*postgres.Store)(nil)

// testLogger routes the store's logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openStore(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 8, PollInterval: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return openStore(t, testenv.PostgresDSN(t))
	})
}

// TestNaiveReaderSkips shows that the out-of-order commit the suite's
// ReadAllNeverSkipsHeldTransaction test builds with HoldOpenAppend really does make a
// reader that follows global_pos alone skip an event, while ReadAll does not: the suite's
// test can fail.
func TestNaiveReaderSkips(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openStore(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	naive := func(after int64) (ids []uuid.UUID, last int64) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT global_pos, event_id FROM es_events WHERE global_pos > $1 ORDER BY global_pos`, after)
		if err != nil {
			t.Fatal(err)
		}
		last = after
		var gp int64
		var id uuid.UUID
		if _, err := pgx.ForEachRow(rows, []any{&gp, &id}, func() error {
			ids = append(ids, id)
			last = gp
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids, last
	}

	first := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte("first")}
	if _, err := s.Append(ctx, "a", eventstore.Any(), first); err != nil {
		t.Fatal(err)
	}
	naiveSeen, cursor := naive(0)
	held := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte("held")}
	commit, err := s.HoldOpenAppend(ctx, "held", held)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { commit() })
	later := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte("later")}
	if _, err := s.Append(ctx, "b", eventstore.Any(), later); err != nil {
		_ = commit()
		t.Fatal(err)
	}
	ids, cursor := naive(cursor)
	naiveSeen = append(naiveSeen, ids...)
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ids, _ = naive(cursor)
	naiveSeen = append(naiveSeen, ids...)
	if len(naiveSeen) != 2 || naiveSeen[0] != first.ID || naiveSeen[1] != later.ID {
		t.Fatalf("naive global_pos reader saw %v; want it to skip the held event %s and see only [%s %s]",
			naiveSeen, held.ID, first.ID, later.ID)
	}

	// The store's reader, over the same rows, sees all three in (tx_id, global_pos) order.
	var got []uuid.UUID
	testenv.Eventually(t, 10*time.Second, func() error {
		evs, err := s.ReadAll(ctx, eventstore.Start, 10)
		if err != nil {
			return err
		}
		got = got[:0]
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if len(got) != 3 {
			return fmt.Errorf("read all saw %d events, want 3", len(got))
		}
		return nil
	})
	if got[0] != first.ID || got[1] != held.ID || got[2] != later.ID {
		t.Fatalf("read all order %v, want [first held later]", got)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  postgres.Config
		ok   bool
	}{
		{"minimal", postgres.Config{DSN: "postgres://u@localhost/db"}, true},
		{"full", postgres.Config{DSN: "host=localhost dbname=db", MaxConns: 4, PollInterval: time.Second}, true},
		{"no DSN", postgres.Config{}, false},
		{"bad DSN", postgres.Config{DSN: "postgres://u@localhost:notaport/db"}, false},
		{"negative MaxConns", postgres.Config{DSN: "postgres://u@localhost/db", MaxConns: -1}, false},
		{"negative PollInterval", postgres.Config{DSN: "postgres://u@localhost/db", PollInterval: -time.Second}, false},
	}
	for _, c := range cases {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if _, err := postgres.Open(context.Background(), postgres.Config{}); err == nil {
		t.Error("Open with an empty config succeeded")
	}
}

// TestOpenConcurrentlyAndReopen opens several stores on one fresh database at once (the
// schema is applied once, under the advisory lock) and reopens it with data in place.
func TestOpenConcurrentlyAndReopen(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 2})
			if err != nil {
				return err
			}
			return s.Close()
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent open: %v", err)
	}
	s := openStore(t, dsn)
	r := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte("kept")}
	if _, err := s.Append(ctx, "s", eventstore.NoStream(), r); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, dsn)
	evs, err := s2.ReadStream(ctx, "s", 1, 10)
	if err != nil || len(evs) != 1 || evs[0].ID != r.ID {
		t.Fatalf("after reopen: %v, %v", evs, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, v int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM es_schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 3 || v != 3 { // 001_events.sql, 002_inline.sql, 003_expected.sql, each applied once
		t.Fatalf("es_schema_version has %d rows, max %d; want 3, 3", n, v)
	}
}

// TestSurvivesTerminatedConnections kills every connection of the store while a
// subscription runs: appends either succeed or fail as transient (then a retry with the
// same ids succeeds, as a duplicate or not), and the subscription carries on.
func TestSurvivesTerminatedConnections(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openStore(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testenv.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dbName := pcfg.Database

	var mu sync.Mutex
	seen := map[uuid.UUID]bool{}
	sctx, scancel := context.WithCancel(ctx)
	subErr := make(chan error, 1)
	go func() {
		subErr <- s.Subscribe(sctx, eventstore.Start, func(_ context.Context, batch []eventstore.RecordedEvent) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range batch {
				seen[e.ID] = true
			}
			return nil
		})
	}()

	var want []uuid.UUID
	transient := 0
	for i := range 6 {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND application_name = 'syncservice-eventstore' AND pid <> pg_backend_pid()`, dbName); err != nil {
			t.Fatal(err)
		}
		r := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte(fmt.Sprint(i))}
		for attempt := 0; ; attempt++ {
			_, err := s.Append(ctx, "s", eventstore.Any(), r)
			if err == nil {
				break
			}
			if !eventstore.Transient(err) || attempt == 5 {
				t.Fatalf("append %d after terminating connections: %v (transient=%v)", i, err, eventstore.Transient(err))
			}
			transient++
		}
		want = append(want, r.ID)
	}
	t.Logf("%d appends failed transiently and were retried", transient)
	testenv.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range want {
			if !seen[id] {
				return fmt.Errorf("subscription has not delivered %s (%d of %d seen)", id, len(seen), len(want))
			}
		}
		return nil
	})
	scancel()
	if err := <-subErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription ended with %v", err)
	}
	evs, err := s.ReadStream(ctx, "s", 1, 100)
	if err != nil || len(evs) != len(want) {
		t.Fatalf("stream holds %d events (%v), want %d", len(evs), err, len(want))
	}
}
