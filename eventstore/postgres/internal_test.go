package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

func TestClassify(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name      string
		ctx       context.Context
		err       error
		transient bool
	}{
		{"serialization failure", live, &pgconn.PgError{Code: "40001"}, true},
		{"deadlock", live, &pgconn.PgError{Code: "40P01"}, true},
		{"admin shutdown", live, &pgconn.PgError{Code: "57P01"}, true},
		{"connection failure class", live, &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", live, &pgconn.PgError{Code: "53300"}, true},
		{"unique violation", live, &pgconn.PgError{Code: "23505"}, false},
		{"syntax error", live, &pgconn.PgError{Code: "42601"}, false},
		{"unexpected EOF", live, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"caller cancelled", cancelled, context.Canceled, false},
		{"plain error", live, errors.New("boom"), false},
	}
	for _, c := range cases {
		got := classify(c.ctx, c.err)
		if eventstore.Transient(got) != c.transient {
			t.Errorf("%s: classify(%v) = %v, transient %v; want %v", c.name, c.err, got, eventstore.Transient(got), c.transient)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: classify lost the cause %v", c.name, c.err)
		}
	}
}

// TestConnectionSettings checks the settings every pooled connection runs with.
func TestConnectionSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{DSN: testenv.PostgresDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.pool.Config().MaxConns; got != DefaultMaxConns {
		t.Errorf("pool MaxConns = %d, want %d", got, DefaultMaxConns)
	}
	var idle, syncCommit, app, jit string
	err = s.pool.QueryRow(ctx, `SELECT current_setting('idle_in_transaction_session_timeout'),
		current_setting('synchronous_commit'), current_setting('application_name'), current_setting('jit')`).
		Scan(&idle, &syncCommit, &app, &jit)
	if err != nil {
		t.Fatal(err)
	}
	if idle != "1min" || syncCommit != "on" || app != "syncservice-eventstore" || jit != "off" {
		t.Errorf("settings: idle_in_transaction_session_timeout=%s synchronous_commit=%s application_name=%s jit=%s; want 1min, on, syncservice-eventstore, off",
			idle, syncCommit, app, jit)
	}
	// Every connection encodes google/uuid values natively (RegisterUUID), and what
	// reaches PostgreSQL is the same uuid.
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	var text, one string
	err = s.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		if _, ok := c.Conn().TypeMap().PlanEncode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids).(*wrapUUIDSliceEncodePlan); !ok {
			t.Error("the store's connection encodes []uuid.UUID without RegisterUUID's plan")
		}
		return c.QueryRow(ctx, `SELECT $1::uuid[]::text, $2::uuid::text`, ids, ids[1]).Scan(&text, &one)
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "{" + ids[0].String() + "," + ids[1].String() + "}"; text != want || one != ids[1].String() {
		t.Errorf("uuids sent: %s, %s; want %s, %s", text, one, want, ids[1])
	}
}

// TestReadAllUsesHorizonIndex guards the plan of the global read: the cursor must be an
// index condition on es_events_horizon, not a filter over every earlier row.
func TestReadAllUsesHorizonIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{DSN: testenv.PostgresDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// A near-empty table would be seq-scanned; forbid that to see the index usage.
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `EXPLAIN `+readAllSQL, uint64(1000), int64(5), 100)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "es_events_horizon") || !strings.Contains(text, "Index Cond: ((ROW(tx_id, global_pos) > ROW(") || strings.Contains(text, "Filter:") {
		t.Fatalf("read all plan does not range-scan es_events_horizon by the cursor:\n%s", text)
	}
}

// TestStreamLockKeys pins the stream lock key (every process must derive the same key
// from a name, whatever its version) and checks that a batch's keys come sorted and
// distinct.
func TestStreamLockKeys(t *testing.T) {
	// FNV-1a 64 of "workspace-1" is 0xa44cac0f8d4e2470.
	if got, want := streamLockKey("workspace-1"), (lockKey{hi: -1538479089, lo: -1924258704}); got != want {
		t.Fatalf("streamLockKey(workspace-1) = %+v, want %+v: the key must never change", got, want)
	}
	names := []string{"c", "a", "b", "a", "workspace-1", "b"}
	his, los := streamLockKeys(names)
	if len(his) != 4 || len(los) != 4 {
		t.Fatalf("%d and %d keys for 4 distinct names", len(his), len(los))
	}
	for i := 1; i < len(his); i++ {
		if his[i-1] > his[i] || (his[i-1] == his[i] && los[i-1] >= los[i]) {
			t.Fatalf("keys not strictly ascending at %d: %v %v", i, his, los)
		}
	}
	seen := map[lockKey]bool{}
	for i := range his {
		seen[lockKey{his[i], los[i]}] = true
	}
	for _, n := range names {
		if !seen[streamLockKey(n)] {
			t.Fatalf("key of %q missing from %v %v", n, his, los)
		}
	}
}

// A connection that carried an append or a read of largeOpBytes of event data is
// closed instead of kept idle in the pool with the buffers pgx grew for it; one that
// carried a small one goes back to the pool. Plain and inline stores, each append path.
func TestLargeOperationsCloseTheirConnection(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	noop := func([]eventstore.RecordedEvent, *pgx.Batch) error { return nil }
	for _, c := range []struct {
		name   string
		inline func([]eventstore.RecordedEvent, *pgx.Batch) error
		expect func(v uint64) eventstore.ExpectedVersion
	}{
		{"plain", nil, eventstore.Exact},
		{"inline one trip", noop, eventstore.Exact},
		{"inline two trips", noop, func(uint64) eventstore.ExpectedVersion { return eventstore.Any() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(ctx, Config{DSN: dsn, MaxConns: 1, Inline: c.inline})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stream := "large-" + uuid.NewString()
			idle := func() int32 { return s.pool.Stat().IdleConns() }
			event := func(n int) eventstore.Record {
				return eventstore.Record{ID: uuid.New(), Type: "Blob", Data: []byte(`"` + strings.Repeat("x", n-2) + `"`)}
			}
			if _, err := s.Append(ctx, stream, c.expect(0), event(1000)); err != nil {
				t.Fatal(err)
			}
			if idle() != 1 {
				t.Fatalf("after a small append: %d idle connections, want 1", idle())
			}
			if _, err := s.Append(ctx, stream, c.expect(1), event(largeOpBytes)); err != nil {
				t.Fatal(err)
			}
			if n := s.pool.Stat().TotalConns(); n != 0 {
				t.Fatalf("after an append of %d bytes: %d connections kept, want none", largeOpBytes, n)
			}
			if evs, err := s.ReadStream(ctx, stream, 1, 1); err != nil || len(evs) != 1 || idle() != 1 {
				t.Fatalf("read of the small event: %d events, %v; %d idle connections, want 1", len(evs), err, idle())
			}
			if evs, err := s.ReadStream(ctx, stream, 2, 1); err != nil || len(evs) != 1 || len(evs[0].Data) != largeOpBytes {
				t.Fatalf("read of the large event: %d events, %v", len(evs), err)
			}
			if n := s.pool.Stat().TotalConns(); n != 0 {
				t.Fatalf("after reading an event of %d bytes: %d connections kept, want none", largeOpBytes, n)
			}
		})
	}
}
