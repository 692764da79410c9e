package projections

import (
	"context"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
)

// inlineStore opens a second store on e's database whose appends apply the read models
// in their own transaction.
func (e *env) inlineStore(t testing.TB) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{DSN: e.dsn, PollInterval: 20 * time.Millisecond,
		Logger: e.log, Inline: Inline})
	if err != nil {
		t.Fatalf("open inline store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Appends through the inline hook are in the read models when the append returns, with
// no projector running; the projector then only moves its checkpoint over them, and the
// models equal a rebuild.
func TestInlineAppliesInTheAppend(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 21)
	last := appendAll(t, is, g.history(3, 4, 300))
	checkAgainstSimulation(t, e, g) // no projector has run

	ps := map[string]*Projector{}
	for _, m := range Models() {
		ps[m.Name()] = e.projector(t, m.Name(), nil)
		run(t, ps[m.Name()].Run)
	}
	e.mu.Lock()
	e.appended = last
	e.mu.Unlock()
	for name, p := range ps {
		e.caughtUp(t, name)
		if st := p.Status(); st.Applied != 0 {
			t.Errorf("%s projector applied %d events the appends had applied already", name, st.Applied)
		}
		e.verifyClean(t, name)
	}

	// Events appended without the hook are still the projector's to apply.
	before := ps[ModelWorkspaces].Status().Applied
	w := g.ws[0]
	e.append(t, []batch{{stream: w.stream, recs: []eventstore.Record{g.randomCommit(w)}}})
	e.caughtUp(t, ModelWorkspaces)
	if got := ps[ModelWorkspaces].Status().Applied; got != before+1 {
		t.Fatalf("projector applied %d events after a plain append, want %d", got, before+1)
	}
	checkAgainstSimulation(t, e, g)
	e.verifyClean(t, ModelWorkspaces)
}

// An inline append that commits into the live tables while the global order is held
// back (a transaction still open elsewhere) lies beyond what a rebuild's swap catches
// up; the swapped-in tables get it from the live projector, which applies inline events
// of transactions older than the swap again instead of skipping them.
func TestRebuildSwapKeepsInlineEventsOfTheReplacedTables(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 22)
	appendAll(t, is, g.history(2, 3, 60))
	e.projectAll(t)
	ctx := context.Background()

	// Hold the global order back with a plain append left open.
	held := g.ws[1]
	commitHeld, err := e.store.HoldOpenAppend(ctx, held.stream, g.randomCommit(held))
	if err != nil {
		t.Fatal(err)
	}
	w := g.ws[0]
	res, err := is.Append(ctx, w.stream, eventstore.Any(), g.randomCommit(w))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rebuild(ctx, RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 50, Logger: e.log}, ModelWorkspaces); err != nil {
		t.Fatal(err)
	}
	if err := commitHeld(); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.appended = res.Position
	e.mu.Unlock()
	e.caughtUp(t, ModelWorkspaces)
	checkAgainstSimulation(t, e, g)
	e.verifyClean(t, ModelWorkspaces)
}

// The live tables hold inline appends before the projector's checkpoint passes them:
// Verify, told how to read those (RebuildConfig.InlineAfter), applies them to its rebuild
// as well and finds no difference; events appended without the hook beyond the
// checkpoint are in neither. Without InlineAfter the same comparison reports them.
func TestVerifyCountsInlineEventsBeyondTheCheckpoint(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 23)
	appendAll(t, is, g.history(3, 4, 150)) // no projector runs: the checkpoints stay at 0
	w := g.ws[0]
	e.append(t, []batch{{stream: w.stream, recs: []eventstore.Record{g.randomCommit(w)}}}) // plain, not applied
	ctx := context.Background()
	for _, m := range Models() {
		cfg := RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 40, Logger: e.log, InlineAfter: postgres.ReadInlineAfter}
		res, err := Verify(ctx, cfg, m.Name(), 5)
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 0 {
			t.Fatalf("%s: %d differences with the inline events applied: %+v", m.Name(), res.Count, res.Diffs)
		}
		cfg.InlineAfter = nil
		if res, err = Verify(ctx, cfg, m.Name(), 5); err != nil || res.Count == 0 {
			t.Fatalf("%s without InlineAfter: %d differences, %v; want the inline rows reported", m.Name(), res.Count, err)
		}
	}
}
