package eventstore_test

import (
	"context"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
)

func TestMarkPhase(t *testing.T) {
	eventstore.MarkPhase(context.Background(), eventstore.PhaseCommitted) // no hook: nothing
	var got []eventstore.AppendPhase
	ctx := eventstore.WithPhases(context.Background(), func(p eventstore.AppendPhase) { got = append(got, p) })
	eventstore.MarkPhase(ctx, eventstore.PhaseWriting)
	eventstore.MarkPhase(ctx, eventstore.PhaseCommitted)
	if len(got) != 2 || got[0] != eventstore.PhaseWriting || got[1] != eventstore.PhaseCommitted {
		t.Fatalf("phases %v", got)
	}
}
