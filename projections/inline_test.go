package projections

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
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
// up. A rebuild that cannot read inline events (no RebuildConfig.InlineAfter) leaves it
// to the live projector, which applies inline events of transactions older than the swap
// again instead of skipping them; until then Verify, which follows the checkpoint's
// inline_from, finds the live model true to its checkpoint.
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
	t.Cleanup(func() { _ = commitHeld() }) // after a failure too: closing the store waits for it
	w := g.ws[0]
	res, err := is.Append(ctx, w.stream, eventstore.Any(), g.randomCommit(w))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rebuild(ctx, RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 50, Logger: e.log}, ModelWorkspaces); err != nil {
		t.Fatal(err)
	}
	cfg := RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 50, Logger: e.log, InlineAfter: postgres.ReadInlineAfter}
	if res, err := Verify(ctx, cfg, ModelWorkspaces, 5); err != nil || res.Count != 0 {
		t.Fatalf("verify while the projector owes the inline append: %d differences %+v, %v", res.Count, res.Diffs, err)
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

// A rebuild told how to read inline events (RebuildConfig.InlineAfter) carries the
// inline appends its replay could not reach, because a transaction open elsewhere in
// the cluster held the global order back, into the tables it swaps in: reads lose
// none of them at the swap, with no projector running (syncctl's appends), and the
// projector, once the global order moves on, applies none of them again.
func TestRebuildSwapCarriesInlineEventsBeyondItsReplay(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 24)
	appendAll(t, is, g.history(3, 4, 80)) // no projector runs: the checkpoints stay at 0
	ctx := context.Background()
	hold, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(context.Background()) //nolint:errcheck // ended below
	if _, err := hold.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	last := appendAll(t, is, g.history(2, 2, 40)) // users and workspaces too: both models
	cfg := RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 50, Logger: e.log, InlineAfter: postgres.ReadInlineAfter}
	for _, m := range Models() {
		before := dump(t, e.pool, m, m.Schema())
		res, err := Rebuild(ctx, cfg, m.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !res.Position.Less(last) {
			t.Fatalf("%s rebuilt up to %s, the last append is at %s: the open transaction held nothing back", m.Name(), res.Position, last)
		}
		after := dump(t, e.pool, m, m.Schema())
		for _, tb := range m.Tables()[1:] {
			if b, a := strings.Join(before[tb], "\n"), strings.Join(after[tb], "\n"); a != b {
				t.Fatalf("%s.%s after the swap (%d rows):\n%s\nbefore it (%d rows):\n%s", m.Name(), tb, len(after[tb]), a, len(before[tb]), b)
			}
		}
		if res, err := Verify(ctx, cfg, m.Name(), 5); err != nil || res.Count != 0 {
			t.Fatalf("%s: verify after the swap: %d differences %+v, %v", m.Name(), res.Count, res.Diffs, err)
		}
	}
	checkAgainstSimulation(t, e, g)

	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.appended = last
	e.mu.Unlock()
	for _, m := range Models() {
		p := e.projector(t, m.Name(), nil)
		run(t, p.Run)
		e.caughtUp(t, m.Name())
		if st := p.Status(); st.Applied != 0 {
			t.Errorf("%s projector applied %d events the swap had carried over", m.Name(), st.Applied)
		}
		if res, err := Verify(ctx, cfg, m.Name(), 5); err != nil || res.Count != 0 {
			t.Fatalf("%s: verify once caught up: %d differences %+v, %v", m.Name(), res.Count, res.Diffs, err)
		}
	}
	checkAgainstSimulation(t, e, g)
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

// The inline events are read from the store whatever search_path the transaction was
// left with: a rebuild's swap catches up in savepoints whose applyTx sets search_path
// to the fresh schema (SET LOCAL outlives a released savepoint), and carrying the
// inline events after that failed with `relation "es_events" does not exist` whenever
// the catch-up had applied anything (a flake of
// TestRebuildSwapCarriesInlineEventsBeyondItsReplay, and a rebuild's failure under
// live appends).
func TestApplyInlineWhateverTheSearchPath(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 25)
	appendAll(t, is, g.history(2, 2, 120)) // more than one batch of inline events
	ctx := context.Background()
	for _, m := range Models() {
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+m.Schema()); err != nil {
			t.Fatal(err)
		}
		cfg := RebuildConfig{BatchSize: 50, InlineAfter: postgres.ReadInlineAfter}
		applied, err := applyInline(ctx, tx, cfg, m, m.Schema(), eventstore.Position{}, 0, false)
		_ = tx.Rollback(ctx)
		if err != nil || !applied {
			t.Fatalf("%s: applied %v, %v", m.Name(), applied, err)
		}
	}
}

// The inline hook applies a record's Value, the event the appender encoded, without
// decoding Data again; a record without one is decoded. (Here the two disagree on
// purpose, to see which one was applied; the service sets Value to what Data encodes.)
func TestInlineAppliesTheRecordsValue(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 25)
	appendAll(t, is, g.history(1, 1, 0))
	w := g.ws[0]
	ctx := context.Background()
	version := func() int64 {
		t.Helper()
		var v int64
		if err := e.pool.QueryRow(ctx, `SELECT version FROM proj_workspaces.workspaces WHERE workspace_id = $1`, w.id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	rec := g.randomCommit(w)
	rec.Value = nil
	if _, err := is.Append(ctx, w.stream, eventstore.Any(), rec); err != nil {
		t.Fatal(err)
	}
	if got := version(); got != w.version {
		t.Fatalf("workspace version %d after an append without Value whose Data says %d", got, w.version)
	}
	rec = g.randomCommit(w)
	ev, ok := rec.Value.(domain.Committed)
	if !ok {
		t.Fatalf("a generated commit's Value is %T", rec.Value)
	}
	ev.WorkspaceVersion += 1000 // the workspaces table's version only moves forward
	rec.Value = ev
	if _, err := is.Append(ctx, w.stream, eventstore.Any(), rec); err != nil {
		t.Fatal(err)
	}
	if got := version(); got != w.version+1000 {
		t.Fatalf("workspace version %d after an append whose Value says %d and whose Data says %d: Value not applied",
			got, w.version+1000, w.version)
	}
	// A Value that is not the record's event as a value (another type, a pointer) is
	// not trusted: Data is decoded.
	high := version()
	for _, wrong := range []func(domain.Committed) any{
		func(c domain.Committed) any { return &c },
		func(c domain.Committed) any { return domain.WorkspaceCreated{} },
	} {
		rec = g.randomCommit(w)
		ev := rec.Value.(domain.Committed)
		ev.WorkspaceVersion += 2000
		rec.Value = wrong(ev)
		if _, err := is.Append(ctx, w.stream, eventstore.Any(), rec); err != nil {
			t.Fatal(err)
		}
		if got := version(); got != high { // Data's version is below the table's: no move
			t.Fatalf("workspace version %d after an append whose Value is a %T (Data says %d, Value %d, the table was at %d): want Data applied",
				got, rec.Value, w.version, ev.WorkspaceVersion, high)
		}
		for _, o := range ev.Items { // Data's item versions are in the read model
			if !o.Stored {
				continue
			}
			var n int
			if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM proj_workspaces.item_history WHERE item_id = $1 AND version = $2`,
				int64(*o.Metadata.ID), o.Metadata.Version).Scan(&n); err != nil || n != 1 {
				t.Fatalf("item %d version %d: %d rows (%v) after an append whose Value is a %T: want Data applied",
					*o.Metadata.ID, o.Metadata.Version, n, err, rec.Value)
			}
		}
	}
}

// A record of a model's streams that the inline hook cannot decode fails its append:
// nothing of it is written (the projector skips inline events without decoding them, so
// it could not set such an event aside).
func TestInlineRefusesARecordItCannotDecode(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 26)
	appendAll(t, is, g.history(1, 1, 0))
	w := g.ws[0]
	ctx := context.Background()
	bad := eventstore.Record{ID: uuid.New(), Type: domain.TypeCommitted, Data: []byte(`{"items": 7}`)}
	if _, err := is.Append(ctx, w.stream, eventstore.Any(), bad); err == nil {
		t.Fatal("an inline append of a commit that does not decode succeeded")
	}
	evs, err := e.store.ReadStream(ctx, w.stream, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.ID == bad.ID {
			t.Fatalf("the refused record was stored at %s@%d", ev.Stream, ev.StreamVersion)
		}
	}
	// Other streams' records are the hook's concern only as far as a model keeps them.
	if _, err := is.Append(ctx, "other-1", eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "Opaque", Data: []byte(`x`)}); err != nil {
		t.Fatalf("an inline append to a stream no model reads: %v", err)
	}
}

// The live projector does not decode the inline events it skips: one that would not
// decode (stored by a hook that applied it in a way this projector does not know, here
// one that writes nothing) is neither applied nor set aside, while the same event
// appended without the hook is set aside.
func TestProjectorSkipsInlineEventsUndecoded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := postgres.Open(ctx, postgres.Config{DSN: e.dsn, Logger: e.log,
		Inline: func([]eventstore.RecordedEvent, *pgx.Batch) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	g := newGen(t, 27)
	appendAll(t, e.store, g.history(1, 1, 3))
	w := g.ws[0]
	newer := eventstore.Record{ID: uuid.New(), Type: "CommittedV9", Data: []byte(`{"future": true}`)}
	if _, err := other.Append(ctx, w.stream, eventstore.Any(), newer); err != nil {
		t.Fatal(err)
	}
	p := e.projector(t, ModelWorkspaces, nil)
	run(t, p.Run)
	last := appendAll(t, e.store, []batch{{stream: w.stream, recs: []eventstore.Record{g.randomCommit(w)}}})
	e.mu.Lock()
	e.appended = last
	e.mu.Unlock()
	e.caughtUp(t, ModelWorkspaces)
	if st := p.Status(); st.SetAside != 0 {
		t.Fatalf("the projector set %d inline events aside", st.SetAside)
	}
	plain := eventstore.Record{ID: uuid.New(), Type: "CommittedV9", Data: []byte(`{"future": true}`)}
	last = appendAll(t, e.store, []batch{{stream: w.stream, recs: []eventstore.Record{plain}}})
	e.mu.Lock()
	e.appended = last
	e.mu.Unlock()
	e.caughtUp(t, ModelWorkspaces)
	if st := p.Status(); st.SetAside != 1 {
		t.Fatalf("the projector set %d events aside, want the one appended without the hook", st.SetAside)
	}
}

// With CheckpointEvery, a batch of events the appends applied inline moves the
// checkpoint in memory only; the stored one catches up, with the exact event count,
// when a read finds nothing new (storeDeferred, the follower's Idle) or with the next
// batch that has something to apply, and the models still equal a rebuild.
func TestProjectorDefersCheckpointOnlyMoves(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 28)
	ctx := context.Background()
	// readAll reads the n events after from, once all are visible.
	readAll := func(from eventstore.Position, n int) []eventstore.RecordedEvent {
		t.Helper()
		var evs []eventstore.RecordedEvent
		testenv.Eventually(t, 10*time.Second, func() error {
			var err error
			if evs, err = e.store.ReadAll(ctx, from, 1000); err == nil && len(evs) != n {
				err = fmt.Errorf("%d events visible after %s, want %d", len(evs), from, n)
			}
			return err
		})
		return evs
	}
	stored := func() checkpointRow {
		t.Helper()
		cp, err := readCheckpoint(ctx, e.pool, workspacesModel.Schema(), false)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	p := e.projector(t, ModelWorkspaces, func(c *Config) { c.CheckpointEvery = time.Hour })
	if _, err := p.load(ctx); err != nil {
		t.Fatal(err)
	}
	apply := func(batch []eventstore.RecordedEvent) {
		t.Helper()
		if _, err := p.applyBatch(ctx, p.Status().Position, batch); err != nil {
			t.Fatal(err)
		}
	}
	hist, nHist := g.history(1, 2, 0), 0
	for _, b := range hist {
		nHist += len(b.recs)
	}
	appendAll(t, e.store, hist) // appended without the hook: the projector applies them
	plain := readAll(eventstore.Start, nHist)
	apply(plain) // something to apply: stored at once
	if cp := stored(); cp.Position != plain[len(plain)-1].Position || cp.Events != int64(len(plain)) {
		t.Fatalf("stored checkpoint %s (%d events) after applying %d events up to %s", cp.Position, cp.Events, len(plain), plain[len(plain)-1].Position)
	}
	n := 0
	for _, b := range g.history(0, 0, 30) {
		n += len(b.recs)
		appendAll(t, is, []batch{b})
	}
	inline := readAll(plain[len(plain)-1].Position, n)
	apply(inline[:10])
	apply(inline[10:15])
	if cp := stored(); cp.Position != plain[len(plain)-1].Position {
		t.Fatalf("stored checkpoint moved to %s over events the appends had applied", cp.Position)
	}
	if st := p.Status(); st.Position != inline[14].Position || st.Events != int64(len(plain)+15) {
		t.Fatalf("projector at %s (%d events), want %s (%d)", st.Position, st.Events, inline[14].Position, len(plain)+15)
	}
	if err := p.storeDeferred(ctx); err != nil {
		t.Fatal(err)
	}
	if cp := stored(); cp.Position != inline[14].Position || cp.Events != int64(len(plain)+15) {
		t.Fatalf("stored checkpoint %s (%d events) after storing the deferred move, want %s (%d)", cp.Position, cp.Events,
			inline[14].Position, len(plain)+15)
	}
	// Deferred again, then stored with a batch that has something to apply.
	apply(inline[15:20])
	w := g.ws[0]
	last := appendAll(t, e.store, []batch{{stream: w.stream, recs: []eventstore.Record{g.randomCommit(w)}}})
	more := readAll(inline[len(inline)-1].Position, 1)
	if more[0].Position != last {
		t.Fatalf("read %s after the inline commits, the plain one is at %s", more[0].Position, last)
	}
	apply(append(inline[20:], more...))
	if cp := stored(); cp.Position != last || cp.Events != int64(len(plain)+len(inline)+1) {
		t.Fatalf("stored checkpoint %s (%d events), want %s (%d)", cp.Position, cp.Events, last, len(plain)+len(inline)+1)
	}
	checkAgainstSimulation(t, e, g)
	e.verifyClean(t, ModelWorkspaces)
}

// A running projector stores a deferred checkpoint move once it finds nothing new to
// read, however long CheckpointEvery is: the stored checkpoint does not stay behind an
// idle store.
func TestProjectorStoresADeferredMoveWhenIdle(t *testing.T) {
	e := newEnv(t)
	is := e.inlineStore(t)
	g := newGen(t, 29)
	p := e.projector(t, ModelWorkspaces, func(c *Config) { c.CheckpointEvery = time.Hour; c.Linger = 20 * time.Millisecond })
	run(t, p.Run)
	for _, b := range g.history(1, 2, 40) {
		last := appendAll(t, is, []batch{b})
		e.mu.Lock()
		e.appended = last
		e.mu.Unlock()
	}
	e.caughtUp(t, ModelWorkspaces)
	if st := p.Status(); st.Applied != 0 {
		t.Errorf("projector applied %d events the appends had applied", st.Applied)
	}
	e.verifyClean(t, ModelWorkspaces)
}
