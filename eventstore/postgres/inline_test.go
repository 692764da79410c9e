package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/eventstore/storetest"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// mirrorSQL creates the side table the tests' Inline hook writes: one row per record, as
// a read model kept in the append's transaction would.
const mirrorSQL = `CREATE TABLE IF NOT EXISTS inline_mirror (
	event_id uuid PRIMARY KEY, stream_id text NOT NULL, stream_pos bigint NOT NULL,
	tx_id xid8, global_pos bigint)`

// mirror is an Inline hook whose statement records every record it runs for, with the
// version the store gave the hook and the position of the event row written by the
// statement's own transaction (none, -1, unless it runs after the append, in its
// transaction). It first locks its table, as the read models do (a statement that
// PostgreSQL allows only in a transaction block). failOn, if set, makes the hook's
// statement fail for records of that type (a read model that cannot apply them).
func mirror(failOn string) func([]eventstore.RecordedEvent, *pgx.Batch) error {
	return func(recs []eventstore.RecordedEvent, b *pgx.Batch) error {
		b.Queue(`LOCK TABLE inline_mirror IN ROW EXCLUSIVE MODE`)
		for _, r := range recs {
			if r.Type == failOn {
				b.Queue(`SELECT 1/0`)
				continue
			}
			b.Queue(`INSERT INTO inline_mirror SELECT $1, $2, $3, e.tx_id, e.global_pos FROM (SELECT 1) AS one
				LEFT JOIN es_events e ON e.event_id = $1 AND e.tx_id = pg_current_xact_id()`, r.ID, r.Stream, int64(r.StreamVersion))
		}
		return nil
	}
}

func openInline(t testing.TB, dsn string, hook func([]eventstore.RecordedEvent, *pgx.Batch) error) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 8, PollInterval: 50 * time.Millisecond,
		Logger: testLogger(t), Inline: hook})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, mirrorSQL); err != nil {
		t.Fatal(err)
	}
	return s
}

// The whole contract holds with an inline projection in the append's transaction.
func TestConformanceInline(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return openInline(t, testenv.PostgresDSN(t), mirror(""))
	})
}

// mirrored returns the side table's rows, keyed by event id.
func mirrored(t *testing.T, dsn string) map[uuid.UUID]eventstore.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_id, stream_id, stream_pos, coalesce(tx_id::text::bigint, -1), coalesce(global_pos, -1) FROM inline_mirror`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]eventstore.RecordedEvent{}
	var r eventstore.RecordedEvent
	var pos, tx, gp int64
	if _, err := pgx.ForEachRow(rows, []any{&r.ID, &r.Stream, &pos, &tx, &gp}, func() error {
		r.StreamVersion, r.Position = uint64(pos), eventstore.Position{Commit: uint64(tx), Prepare: uint64(gp)}
		out[r.ID] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func rec(typ string) eventstore.Record {
	return eventstore.Record{ID: uuid.New(), Type: typ, Data: []byte(`{}`)}
}

// The hook's statements apply exactly the records written, with the versions the
// store reads back, in the append's transaction, in single appends and group commits;
// an append that writes nothing (wrong version, a retry of a stored append) applies
// nothing, and does not take the others of its group commit with it.
func TestInlineSeesWhatWasWritten(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openInline(t, dsn, mirror(""))
	ctx := context.Background()
	a, b := "ws-"+uuid.NewString(), "ws-"+uuid.NewString()
	r1, r2, r3 := rec("E"), rec("E"), rec("E")
	if _, err := s.Append(ctx, a, eventstore.NoStream(), r1, r2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, a, eventstore.NoStream(), rec("E")); !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("append at a wrong version: %v", err)
	}
	if res, err := s.Append(ctx, a, eventstore.NoStream(), r1, r2); err != nil || !res.Duplicate {
		t.Fatalf("retried append: %+v, %v", res, err)
	}
	res := s.AppendBatch(ctx, []eventstore.StreamAppend{
		{Stream: b, Expected: eventstore.NoStream(), Records: []eventstore.Record{r3}},
		{Stream: a, Expected: eventstore.Exact(7), Records: []eventstore.Record{rec("E")}}, // wrong version
	})
	if res[0].Err != nil || !errors.Is(res[1].Err, eventstore.ErrWrongVersion) {
		t.Fatalf("batch: %+v", res)
	}
	// Read by stream: the global order may hold a recent commit back while another
	// test's transaction is open.
	var all []eventstore.RecordedEvent
	for _, stream := range []string{a, b} {
		recs, err := s.ReadStream(ctx, stream, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	got := mirrored(t, dsn)
	want := 0
	for _, e := range all {
		want++
		if !e.Inline {
			t.Errorf("event %s@%d read back with Inline false", e.Stream, e.StreamVersion)
		}
		m, ok := got[e.ID]
		if !ok || m.Stream != e.Stream || m.StreamVersion != e.StreamVersion || m.Position != e.Position {
			t.Errorf("event %s@%d %s: mirrored as %+v (present %v)", e.Stream, e.StreamVersion, e.Position, m, ok)
		}
	}
	if want != 3 || len(got) != 3 {
		t.Fatalf("stored %d events of the test's streams, mirrored %d rows, want 3 and 3: %+v", want, len(got), got)
	}
	for _, id := range []uuid.UUID{r1.ID, r2.ID, r3.ID} {
		if _, ok := got[id]; !ok {
			t.Errorf("record %s not mirrored", id)
		}
	}
}

// A failing inline statement fails the append and writes nothing: neither the events
// nor the read model; the stream stays usable, and in a group commit the others fail
// with it (one transaction) and are then appended on retry.
func TestInlineFailureWritesNothing(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openInline(t, dsn, mirror("Poison"))
	ctx := context.Background()
	a := "ws-" + uuid.NewString()
	bad := rec("Poison")
	if _, err := s.Append(ctx, a, eventstore.NoStream(), rec("E"), bad); err == nil {
		t.Fatal("append with a failing inline statement succeeded")
	}
	if recs, err := s.ReadStream(ctx, a, 1, 10); err != nil || len(recs) != 0 {
		t.Fatalf("stream after a failed append: %d events, %v", len(recs), err)
	}
	if got := mirrored(t, dsn); len(got) != 0 {
		for _, m := range got {
			if m.Stream == a {
				t.Fatalf("read model row of a failed append: %+v", m)
			}
		}
	}
	good := rec("E")
	if res, err := s.Append(ctx, a, eventstore.NoStream(), good); err != nil || res.StreamVersion != 1 {
		t.Fatalf("append after the failure: %+v, %v", res, err)
	}
	if _, ok := mirrored(t, dsn)[good.ID]; !ok {
		t.Fatal("the next append was not mirrored")
	}
}

// Without Config.Inline, events read back with Inline false, whichever read serves them.
func TestPlainAppendNotInline(t *testing.T) {
	s := openStore(t, testenv.PostgresDSN(t))
	ctx := context.Background()
	a := "ws-" + uuid.NewString()
	if _, err := s.Append(ctx, a, eventstore.NoStream(), rec("E")); err != nil {
		t.Fatal(err)
	}
	byStream, err := s.ReadStream(ctx, a, 1, 10)
	if err != nil || len(byStream) != 1 || byStream[0].Inline {
		t.Fatalf("ReadStream: %+v, %v", byStream, err)
	}
	bounded, err := s.ReadStreamBytes(ctx, a, 1, 10, 1<<20)
	if err != nil || len(bounded) != 1 || bounded[0].Inline {
		t.Fatalf("ReadStreamBytes: %+v, %v", bounded, err)
	}
}

// In a group commit, an append whose read-model write fails does not take the others
// with it: they are stored, it alone fails and writes nothing.
func TestInlineFailureInAGroupCommitFailsAlone(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openInline(t, dsn, mirror("Poison"))
	ctx := context.Background()
	a, b, c := "ws-"+uuid.NewString(), "ws-"+uuid.NewString(), "ws-"+uuid.NewString()
	good1, bad, good2 := rec("E"), rec("Poison"), rec("E")
	res := s.AppendBatch(ctx, []eventstore.StreamAppend{
		{Stream: a, Expected: eventstore.NoStream(), Records: []eventstore.Record{good1}},
		{Stream: b, Expected: eventstore.NoStream(), Records: []eventstore.Record{bad}},
		{Stream: c, Expected: eventstore.NoStream(), Records: []eventstore.Record{good2}},
	})
	if res[0].Err != nil || res[2].Err != nil || res[0].Result.StreamVersion != 1 || res[2].Result.StreamVersion != 1 {
		t.Fatalf("the good appends: %+v, %+v", res[0], res[2])
	}
	if res[1].Err == nil {
		t.Fatal("the append whose read-model write fails succeeded")
	}
	if recs, err := s.ReadStream(ctx, b, 1, 10); err != nil || len(recs) != 0 {
		t.Fatalf("failed stream: %d events, %v", len(recs), err)
	}
	got := mirrored(t, dsn)
	for _, r := range []eventstore.Record{good1, good2} {
		if _, ok := got[r.ID]; !ok {
			t.Fatalf("record %s of a good append not mirrored", r.ID)
		}
	}
}

// An append that names its expected version sends the hook's statements in the same
// round trip: when the hook runs, nothing has been sent (no stream lock is held). With
// expected version Any the append runs first (its versions are known only then): the
// hook runs while its transaction holds the stream's lock. Both apply what they wrote.
func TestInlineOneRoundTrip(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	side, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close(ctx)
	var held []int
	apply := mirror("")
	s := openInline(t, dsn, func(recs []eventstore.RecordedEvent, b *pgx.Batch) error {
		var n int
		if err := side.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil {
			return err
		}
		held = append(held, n)
		return apply(recs, b)
	})
	a := "ws-" + uuid.NewString()
	r1, r2, r3 := rec("E"), rec("E"), rec("E")
	if _, err := s.Append(ctx, a, eventstore.NoStream(), r1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, a, eventstore.Exact(1), r2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, a, eventstore.Any(), r3); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(held) != "[0 0 1]" {
		t.Fatalf("stream locks held when the hook ran: %v, want [0 0 1] (one round trip, one, two)", held)
	}
	got := mirrored(t, dsn)
	stored, err := s.ReadStream(ctx, a, 1, 10)
	if err != nil || len(stored) != 3 {
		t.Fatalf("stream: %d events, %v", len(stored), err)
	}
	for i, e := range stored {
		if m, ok := got[e.ID]; !ok || m.StreamVersion != uint64(i+1) || m.Position != e.Position {
			t.Fatalf("event %d (%s) mirrored as %+v (present %v)", i+1, e.Position, m, ok)
		}
	}
}

// BenchmarkInlineAppend times single appends of one ~1 KiB record with an inline hook
// (the tests' mirror: a table lock and one insert), alternating the two paths op by op
// so that both see the same machine: expected version Exact (one round trip) and Any
// (two round trips). Reported: each path's p50 and mean in µs, and the CPU time the
// database's PostgreSQL processes used per append (pg-cpu-µs/op, testenv.ServerCPU).
func BenchmarkInlineAppend(b *testing.B) {
	dsn := testenv.PostgresDSN(b)
	s := openInline(b, dsn, mirror(""))
	ctx := context.Background()
	stream := "ws-" + uuid.NewString()
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), rec("E")); err != nil {
		b.Fatal(err)
	}
	var one, two []time.Duration
	v := uint64(1)
	cpu, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer cpu.Close(ctx)
	server0, err := testenv.ServerCPU(ctx, cpu)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		expected, into := eventstore.Exact(v), &one
		if i%2 == 1 {
			expected, into = eventstore.Any(), &two
		}
		t0 := time.Now()
		if _, err := s.Append(ctx, stream, expected, eventstore.Record{ID: uuid.New(), Type: "E", Data: payload}); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
		v++
	}
	b.StopTimer()
	server, err := testenv.ServerCPU(ctx, cpu)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((server-server0).Microseconds())/float64(b.N), "pg-cpu-µs/op")
	for _, c := range []struct {
		name string
		d    []time.Duration
	}{{"one-trip", one}, {"two-trips", two}} {
		if len(c.d) == 0 {
			continue
		}
		slices.Sort(c.d)
		var sum time.Duration
		for _, d := range c.d {
			sum += d
		}
		b.ReportMetric(float64(c.d[len(c.d)/2].Microseconds()), c.name+"-p50-µs")
		b.ReportMetric(float64(sum.Microseconds())/float64(len(c.d)), c.name+"-mean-µs")
	}
}

// An append made with eventstore.WithPhases reports the phases it passes: writing and
// committed, and sent in between when it takes two round trips (inline, expected
// version Any).
func TestAppendMarksPhases(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	plain, inline := openStore(t, dsn), openInline(t, dsn, mirror(""))
	for _, c := range []struct {
		name     string
		s        *postgres.Store
		expected eventstore.ExpectedVersion
		want     string
	}{
		{"plain", plain, eventstore.NoStream(), "[0 2]"},
		{"inline, one trip", inline, eventstore.NoStream(), "[0 2]"},
		{"inline, two trips", inline, eventstore.Any(), "[0 1 2]"},
	} {
		var got []eventstore.AppendPhase
		ctx := eventstore.WithPhases(context.Background(), func(p eventstore.AppendPhase) { got = append(got, p) })
		if _, err := c.s.Append(ctx, "ws-"+uuid.NewString(), c.expected, rec("E")); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if fmt.Sprint(got) != c.want {
			t.Errorf("%s: phases %v, want %s", c.name, got, c.want)
		}
	}
}
