package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// TestInlineTransactionsUseGenericPlans appends through every explicit-transaction path
// (one round trip, two, multi) on a one-connection pool whose Inline hook writes an
// unnest of array parameters, as the read models do, and checks in the connection's
// pg_prepared_statements that the appends and the hook's statement ran on generic
// plans: planned once, not once per execution (genericPlansSQL).
func TestInlineTransactionsUseGenericPlans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := testenv.PostgresDSN(t)
	const hookSQL = `INSERT INTO plan_mirror (event_id, stream_id, stream_pos)
		SELECT u.id, u.stream, u.pos FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS u(id, stream, pos)
		ON CONFLICT (event_id) DO NOTHING`
	hook := func(recs []eventstore.RecordedEvent, b *pgx.Batch) error {
		ids, streams, pos := make([]uuid.UUID, len(recs)), make([]string, len(recs)), make([]int64, len(recs))
		for i, r := range recs {
			ids[i], streams[i], pos[i] = r.ID, r.Stream, int64(r.StreamVersion)
		}
		b.Queue(hookSQL, ids, streams, pos)
		return nil
	}
	s, err := Open(ctx, Config{DSN: dsn, MaxConns: 1, Inline: hook})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `CREATE TABLE plan_mirror (event_id uuid PRIMARY KEY, stream_id text, stream_pos bigint)`); err != nil {
		t.Fatal(err)
	}
	rec := func() eventstore.Record { return eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte(`{}`)} }
	versions := map[string]uint64{}
	for i := range 12 {
		a, b := fmt.Sprintf("plans-a-%d", i%3), fmt.Sprintf("plans-b-%d", i%3)
		if _, err := s.Append(ctx, a, eventstore.Exact(versions[a]), rec(), rec()); err != nil { // one round trip
			t.Fatal(err)
		}
		res, err := s.Append(ctx, a, eventstore.Any(), rec()) // two
		if err != nil {
			t.Fatal(err)
		}
		multi, err := s.AppendMulti(ctx, []eventstore.StreamAppend{{Stream: b, Expected: eventstore.Any(), Records: []eventstore.Record{rec()}},
			{Stream: a, Expected: eventstore.Exact(res.StreamVersion), Records: []eventstore.Record{rec()}}})
		if err != nil {
			t.Fatal(err)
		}
		versions[a] = multi[1].StreamVersion
	}
	rows, err := s.pool.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
		WHERE statement LIKE '%unnest%' AND statement NOT LIKE '%pg_advisory_xact_lock%'`)
	if err != nil {
		t.Fatal(err)
	}
	var stmt string
	var generic, custom int64
	seen := map[string]bool{}
	if _, err := pgx.ForEachRow(rows, []any{&stmt, &generic, &custom}, func() error {
		kind := "append"
		if strings.Contains(stmt, "plan_mirror") {
			kind = "hook"
		}
		seen[kind] = true
		if custom > 0 || generic == 0 {
			t.Errorf("%s statement planned %d times for its executions (generic plans %d):\n%s", kind, custom, generic, stmt)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !seen["append"] || !seen["hook"] {
		t.Fatalf("prepared statements of the appends or the hook not found: %v", seen)
	}
}
