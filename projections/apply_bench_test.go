package projections

import (
	"context"
	"fmt"
	"testing"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// BenchmarkApplyCommits measures the live apply path (the projector's, and the inline
// hook's statements): one transaction applying 10 commits of 10 items each (new files
// and changes) to one workspace of the live model, which already holds a few thousand
// items. It is what item writes cost per commit, e.g. with and without a condition on
// them (run it on two trees, alternating):
//
//	go test -run '^$' -bench ApplyCommits -benchtime 300x -count 3 ./projections/
func BenchmarkApplyCommits(b *testing.B) {
	_, pool := benchEnv(b)
	ctx := context.Background()
	g := newGen(b, 45)
	g.user()
	w, bt := g.workspace(0, false)
	var sv uint64
	toDecoded := func(recs []eventstore.Record) []decoded {
		out := make([]decoded, len(recs))
		for i := range recs {
			sv++
			rec := &eventstore.RecordedEvent{Stream: w.stream, StreamVersion: sv, Type: recs[i].Type, Data: recs[i].Data}
			d, err := decode(rec)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = d
		}
		return out
	}
	commits := func(n int) []decoded {
		recs := make([]eventstore.Record, n)
		for c := range recs {
			outs := make([]domain.ItemOutcome, 0, 10)
			for i := range 10 {
				if i%2 == 0 || len(w.files) < 10 {
					outs = append(outs, w.store(g.newItem(w, nil, false, fmt.Sprintf("f%d", g.nextID))))
				} else {
					id := w.files[(c*7+i*13)%len(w.files)]
					outs = append(outs, w.store(g.next(w, id, domain.StatusChanged)))
				}
			}
			recs[c] = g.committed(w, outs)
		}
		return toDecoded(recs)
	}
	apply := func(ds []decoded) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
		if err := workspacesModel.write(ctx, tx, workspacesModel.Schema(), ds, false, nil); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	apply(toDecoded(bt.recs))
	for range 50 {
		apply(commits(10))
	}
	batches := make([][]decoded, b.N)
	for i := range batches {
		batches[i] = commits(10)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply(batches[i])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(10*b.N), "µs/commit")
}
