package stages_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stacksync-es/syncservice/internal/stages"
)

func TestTraceStepsInStageOrder(t *testing.T) {
	tr := stages.Start()
	if at, ok := tr.At(stages.Received); !ok || at != 0 {
		t.Fatalf("Received at %v, %v; want 0, true", at, ok)
	}
	for _, s := range []stages.Stage{stages.Started, stages.Queued, stages.Committed, stages.Done} {
		tr.Mark(s)
	}
	if _, ok := tr.At(stages.Parsed); ok {
		t.Fatal("Parsed reached without a mark")
	}
	steps := tr.Steps()
	var got []stages.Stage
	var sum int64
	for _, st := range steps {
		got = append(got, st.Stage)
		if st.Took < 0 {
			t.Fatalf("%s took %v", st.Stage, st.Took)
		}
		sum += int64(st.Took)
	}
	want := []stages.Stage{stages.Started, stages.Queued, stages.Committed, stages.Done}
	if len(got) != len(want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("steps %v, want %v", got, want)
		}
	}
	done, _ := tr.At(stages.Done)
	if sum != int64(done) {
		t.Fatalf("steps sum to %d ns, Done at %v", sum, done)
	}
	if stages.Committed.String() != "committed" || stages.NumStages.String() != "unknown" {
		t.Fatalf("names %q, %q", stages.Committed, stages.NumStages)
	}
}

// A stage marked before an earlier one counts as taking no time, and the stages after
// it are timed from the latest mark so far: the steps never sum past the last mark.
func TestTraceStepsOutOfOrder(t *testing.T) {
	tr := stages.Start()
	tr.Mark(stages.Committed)
	tr.Mark(stages.Queued) // later than Committed
	tr.Mark(stages.Done)
	var sum int64
	for _, st := range tr.Steps() {
		if st.Stage == stages.Committed && st.Took != 0 {
			t.Fatalf("committed (marked before queued) took %v, want 0", st.Took)
		}
		sum += int64(st.Took)
	}
	if done, _ := tr.At(stages.Done); sum != int64(done) {
		t.Fatalf("steps sum to %d ns, Done at %v", sum, done)
	}
}

func TestNilTraceAndBareContext(t *testing.T) {
	var tr *stages.Trace
	tr.Mark(stages.Done)
	if _, ok := tr.At(stages.Done); ok || tr.Steps() != nil {
		t.Fatal("a nil trace reports a stage")
	}
	ctx := context.Background()
	stages.Mark(ctx, stages.Done) // no trace: nothing to do, no panic
	if stages.With(ctx) != ctx || stages.With(ctx, nil) != ctx {
		t.Fatal("With without a trace changed the context")
	}
	if stages.From(ctx) != nil || stages.Only(ctx) != nil {
		t.Fatal("a bare context carries a trace")
	}
}

// A context carrying several traces marks all of them; Only finds one only when there
// is exactly one.
func TestContextCarriesTraces(t *testing.T) {
	a, b := stages.Start(), stages.Start()
	ctx := stages.With(context.Background(), a, nil, b)
	if stages.Only(ctx) != nil || len(stages.From(ctx)) != 2 {
		t.Fatalf("From %v, Only %v", stages.From(ctx), stages.Only(ctx))
	}
	stages.Mark(ctx, stages.Committed)
	for _, tr := range []*stages.Trace{a, b} {
		if _, ok := tr.At(stages.Committed); !ok {
			t.Fatal("a trace of the group was not marked")
		}
	}
	if stages.Only(stages.With(context.Background(), a)) != a {
		t.Fatal("Only lost the single trace")
	}
}

// Marks from several goroutines while another reads the steps: run with -race.
func TestTraceConcurrentMarks(t *testing.T) {
	tr := stages.Start()
	var wg sync.WaitGroup
	for s := stages.Started; s < stages.NumStages; s++ {
		wg.Go(func() { tr.Mark(s) })
	}
	wg.Go(func() { _ = tr.Steps() })
	wg.Wait()
	if n := len(tr.Steps()); n != int(stages.NumStages)-1 {
		t.Fatalf("%d steps, want %d", n, stages.NumStages-1)
	}
}
