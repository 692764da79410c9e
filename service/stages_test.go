package service_test

import (
	"context"
	"testing"

	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/service"
)

// A commit whose context carries a trace marks the stages it passes through in the
// service (queued, taken into a batch, decided, published) and, on the PostgreSQL
// store, in the store (writing, committed), in stage order.
func TestCommitMarksItsStages(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		s := h.service(h.store, func(c *service.Config) {
			c.OnCommitted = func(context.Context, service.AppendedCommit) {}
		})
		tr := stages.Start()
		ctx := stages.With(withIDs(context.Background(), 5000), tr)
		if _, err := s.Commit(ctx, h.req("traced", file(-3, "traced.txt", nil, 1))); err != nil {
			t.Fatal(err)
		}
		want := []stages.Stage{stages.Queued, stages.Taken, stages.Decided, stages.Published}
		if t.Name() == "TestCommitMarksItsStages/postgres" {
			want = []stages.Stage{stages.Queued, stages.Taken, stages.Decided, stages.Writing, stages.Committed, stages.Published}
		}
		var last int64
		for _, st := range want {
			at, ok := tr.At(st)
			if !ok {
				t.Fatalf("stage %s not marked", st)
			}
			if int64(at) < last {
				t.Fatalf("stage %s marked at %v, before the stage before it", st, at)
			}
			last = int64(at)
		}
		// Without a trace nothing is marked and nothing fails.
		if _, err := s.Commit(withIDs(context.Background(), 6000), h.req("untraced", file(-4, "untraced.txt", nil, 1))); err != nil {
			t.Fatal(err)
		}
	})
}
