package projections

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// appendAllExact is appendAll with each append naming the version it expects, as the
// service does: the PostgreSQL store then sends the read models' statements in the
// append's own round trip.
func appendAllExact(t testing.TB, s eventstore.Store, bs []batch) {
	t.Helper()
	ctx := context.Background()
	versions := map[string]uint64{}
	for _, b := range bs {
		if len(b.recs) == 0 {
			continue
		}
		res, err := s.Append(ctx, b.stream, eventstore.Exact(versions[b.stream]), b.recs...)
		if err != nil {
			t.Fatalf("append %d to %s@%d: %v", len(b.recs), b.stream, versions[b.stream], err)
		}
		versions[b.stream] = res.StreamVersion
	}
}

// The read models' statements sent in the append's round trip (expected versions named)
// leave the models as a rebuild would, with no projector running; an append at a wrong
// version applies nothing.
func TestInlineOneTripAppliesInTheAppend(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 22)
	appendAllExact(t, is, g.history(3, 4, 300))
	checkAgainstSimulation(t, e, g)
	// A commit decided on a stale state: refused, nothing of it in the models.
	w := g.ws[0]
	stale := g.randomCommit(w)
	if _, err := is.Append(context.Background(), w.stream, eventstore.Exact(1), stale); err == nil {
		t.Fatal("an append at a stale version succeeded")
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM proj_workspaces.workspaces WHERE workspace_id = $1 AND version >= $2`,
		w.id, w.version).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the refused commit (version %d) reached the workspaces table", w.version)
	}
}

// BenchmarkInlineCommit appends generated commits (1-3 items) through the read models'
// inline hook, alternating op by op between an expected version (one round trip) and
// Any (two), and reports each path's p50 and mean in µs, and the CPU time the
// database's PostgreSQL processes used per commit (pg-cpu-µs/op: on a busy machine it
// varies far less than the latencies, which are mostly the WAL flush).
func BenchmarkInlineCommit(b *testing.B) {
	e := newEnv(b)
	is := e.inlineStore(b)
	g := newGen(b, 23)
	appendAllExact(b, is, g.history(2, 4, 0))
	versions := map[string]uint64{}
	for _, w := range g.ws {
		versions[w.stream] = w.chain.version
	}
	ctx := context.Background()
	var one, two []time.Duration
	_, server0 := cpuTimes(b, e.pool)
	b.ResetTimer()
	for i := range b.N {
		w := g.ws[i%len(g.ws)]
		r := g.randomCommit(w)
		expected, into := eventstore.Exact(versions[w.stream]), &one
		if i%2 == 1 {
			expected, into = eventstore.Any(), &two
		}
		t0 := time.Now()
		res, err := is.Append(ctx, w.stream, expected, r)
		if err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
		versions[w.stream] = res.StreamVersion
	}
	b.StopTimer()
	_, server := cpuTimes(b, e.pool)
	b.ReportMetric(float64((server-server0).Microseconds())/float64(b.N), "pg-cpu-µs/op")
	report := func(name string, d []time.Duration) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(sum.Microseconds())/float64(len(d)), name+"-mean-µs")
	}
	report("one-trip", one)
	report("two-trips", two)
}
