package projections

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// runProjectors starts a projector per model and returns them by model.
func runProjectors(t *testing.T, e *env, mut func(*Config)) map[string]*Projector {
	out := map[string]*Projector{}
	for _, m := range Models() {
		p := e.projector(t, m.Name(), mut)
		out[m.Name()] = p
		run(t, p.Run)
	}
	return out
}

// TestNULEventsAreProjected: events stored before the protocol refused U+0000 (a
// commit with NUL in a mimetype, a filename and a chunk name; a device with NUL in its
// name, os and ip) are projected with U+FFFD in their place, the events after them are
// applied, and rebuild and verify pass over them.
func TestNULEventsAreProjected(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 21)
	e.append(t, g.history(2, 2, 20))
	w := g.ws[0]
	md := g.newItem(w, nil, false, "nul\x00name")
	md.Mimetype = "text/\x00plain"
	md.Chunks = []string{"c\x00hunk", "ok", "bad\xffutf8"}
	e.append(t, []batch{{w.stream, []eventstore.Record{g.committed(w, []domain.ItemOutcome{w.store(md)})}}})
	u := g.users[0]
	ip := "10.0.0.\x00"
	e.append(t, []batch{{u.stream, []eventstore.Record{u.record(t, domain.DeviceRegistered{PrevHash: u.prev, UserID: g.uids[0],
		DeviceID: g.uuid(), RequestID: "nul", Name: "dev\x00ice", OS: "li\x00nux", IP: &ip, At: g.tick()})}}})
	for range 5 {
		e.append(t, []batch{{g.ws[1].stream, []eventstore.Record{g.randomCommit(g.ws[1])}}})
		e.append(t, []batch{{w.stream, []eventstore.Record{g.randomCommit(w)}}})
	}
	projs := runProjectors(t, e, nil)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	checkAgainstSimulation(t, e, g)

	ctx := context.Background()
	var filename, mimetype string
	var chunks []string
	if err := e.pool.QueryRow(ctx, `SELECT filename, mimetype, chunks FROM proj_workspaces.item_history
		WHERE item_id = $1 AND version = 1`, int64(*md.ID)).Scan(&filename, &mimetype, &chunks); err != nil {
		t.Fatal(err)
	}
	if filename != "nul\uFFFDname" || mimetype != "text/\uFFFDplain" || strings.Join(chunks, "|") != "c\uFFFDhunk|ok|bad\uFFFDutf8" {
		t.Fatalf("stored %q %q %q, want U+FFFD for each NUL and invalid byte", filename, mimetype, chunks)
	}
	var name, os, gotIP string
	if err := e.pool.QueryRow(ctx, `SELECT name, os, ip FROM proj_accounts.devices WHERE name LIKE 'dev%'`).Scan(&name, &os, &gotIP); err != nil {
		t.Fatal(err)
	}
	if name != "dev\uFFFDice" || os != "li\uFFFDnux" || gotIP != "10.0.0.\uFFFD" {
		t.Fatalf("device stored as %q %q %q", name, os, gotIP)
	}
	for _, m := range Models() {
		if st := projs[m.Name()].Status(); st.SetAside != 0 {
			t.Errorf("%s set %d events aside, want none (NUL text is sanitized)", m.Name(), st.SetAside)
		}
		e.verifyClean(t, m.Name())
		res, err := Rebuild(ctx, RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 13, Logger: e.log}, m.Name())
		if err != nil {
			t.Fatalf("rebuild %s: %v", m.Name(), err)
		}
		if res.SetAside != 0 {
			t.Errorf("rebuild of %s set %d events aside", m.Name(), res.SetAside)
		}
	}
	checkAgainstSimulation(t, e, g)
}

// TestUndecodableEventSetAside: a stored event of a known type whose data does not
// decode is set aside (listed, counted, in the status) and every event after it is
// applied; verify and rebuild set it aside the same way.
func TestUndecodableEventSetAside(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 22)
	e.append(t, g.history(2, 2, 10))
	w := g.ws[0]
	w.version++ // the poison takes the workspace's next stream version; keep the chain in step
	w.chain.version++
	poisonAt := w.chain.version
	e.append(t, []batch{{w.stream, []eventstore.Record{{ID: uuid.New(), Type: domain.TypeCommitted, Data: []byte(`{"workspaceId": 42`)}}}})
	w.version-- // the read model never sees that workspaceVersion: later commits reuse it
	for range 5 {
		e.append(t, []batch{{g.ws[1].stream, []eventstore.Record{g.randomCommit(g.ws[1])}}})
		e.append(t, []batch{{w.stream, []eventstore.Record{g.randomCommit(w)}}})
	}
	projs := runProjectors(t, e, nil)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	checkAgainstSimulation(t, e, g)
	if n := projs[ModelWorkspaces].Status().SetAside; n != 1 {
		t.Fatalf("projector set %d events aside, want 1", n)
	}
	checkSetAside(t, e, w.stream, poisonAt, "decode")
	e.verifyClean(t, ModelWorkspaces)
	res, err := Rebuild(context.Background(), RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 7, Logger: e.log}, ModelWorkspaces)
	if err != nil || res.SetAside != 1 {
		t.Fatalf("rebuild: %+v %v, want one event set aside", res, err)
	}
	checkSetAside(t, e, w.stream, poisonAt, "decode")
}

// checkSetAside checks the workspaces model lists exactly one set-aside event, and that status counts it.
func checkSetAside(t *testing.T, e *env, stream string, version uint64, errPart string) {
	t.Helper()
	ctx := context.Background()
	list, total, err := SetAsideOf(ctx, e.pool, ModelWorkspaces, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(list) != 1 || list[0].Stream != stream || list[0].StreamVersion != version ||
		list[0].Type != domain.TypeCommitted || !strings.Contains(list[0].Error, errPart) || list[0].Position.IsZero() {
		t.Fatalf("set aside: %d %+v, want %s@%d with an error about %q", total, list, stream, version, errPart)
	}
	st, err := StatusOf(ctx, e.pool, e.store, ModelWorkspaces, 0)
	if err != nil || st.SetAside != 1 || st.Lag.Events != 0 {
		t.Fatalf("status %+v %v: want 1 set aside and no lag", st, err)
	}
}

// TestConstraintViolationIsolated: an event PostgreSQL refuses (here: a CHECK
// constraint the test adds to the live table) fails its whole batch; the projector
// splits the batch until it has found that event, sets it aside and applies the rest.
func TestConstraintViolationIsolated(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 23)
	e.append(t, g.history(2, 2, 10))
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `ALTER TABLE proj_workspaces.item_history ADD CONSTRAINT no_poison CHECK (filename <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	w, other := g.ws[0], g.ws[1]
	var bs []batch
	for range 10 {
		bs = append(bs, batch{other.stream, []eventstore.Record{g.randomCommit(other)}})
	}
	poisonItem := g.newItem(w, nil, true, "poison")
	bs = append(bs, batch{w.stream, []eventstore.Record{g.committed(w, []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true,
		Stored: true, Metadata: &poisonItem}})}})
	for range 10 {
		bs = append(bs, batch{other.stream, []eventstore.Record{g.randomCommit(other)}})
	}
	poisonAt := w.chain.version
	e.append(t, bs) // the simulation of w stays before the poison: the model never applies it
	w.version--
	projs := runProjectors(t, e, nil)
	e.caughtUp(t, ModelWorkspaces)
	checkAgainstSimulation(t, e, g)
	if n := projs[ModelWorkspaces].Status().SetAside; n != 1 {
		t.Fatalf("projector set %d events aside, want 1", n)
	}
	checkSetAside(t, e, w.stream, poisonAt, "no_poison")
	if err := projs[ModelWorkspaces].Healthy(); err != nil {
		t.Fatalf("a set-aside event must not make the projector unhealthy: %v", err)
	}
}

// TestTransientFailuresNeverSetAside: batches failing with transient errors (lost
// connection, serialization failure) are retried whole; nothing is set aside; and a
// projector failing past StallAfter reports itself in Healthy, naming the model, its
// checkpoint and the error, until it makes progress again.
func TestTransientFailuresNeverSetAside(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 24)
	bs := g.history(2, 3, 60)
	e.append(t, bs)
	var calls atomic.Int64
	var blocked atomic.Bool
	blocked.Store(true)
	p := e.projector(t, ModelWorkspaces, func(c *Config) {
		c.BatchSize = 5
		c.StallAfter = 200 * time.Millisecond
		c.afterApply = func() error {
			n := calls.Add(1)
			switch {
			case blocked.Load():
				return eventstore.TransientError(errors.New("connection lost"))
			case n%3 == 0:
				return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
			}
			return nil
		}
	})
	run(t, p.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		err := p.Healthy()
		if err == nil {
			return errors.New("still healthy")
		}
		if !strings.Contains(err.Error(), "workspaces") || !strings.Contains(err.Error(), "connection lost") ||
			!strings.Contains(err.Error(), "checkpoint") {
			t.Fatalf("Healthy() = %v: want the model, its checkpoint and the last error", err)
		}
		return nil
	})
	blocked.Store(false)
	e.caughtUp(t, ModelWorkspaces)
	testenv.Eventually(t, 20*time.Second, p.Healthy)
	if st := p.Status(); st.SetAside != 0 || st.Applied != modelEvents(workspacesModel, bs) {
		t.Fatalf("status %+v: want nothing set aside and every event applied", st)
	}
	if _, total, err := SetAsideOf(context.Background(), e.pool, ModelWorkspaces, 0); err != nil || total != 0 {
		t.Fatalf("set aside %d %v, want none", total, err)
	}
	checkAgainstSimulation(t, e, g)
}

// TestBatchesAreBoundedInBytes (issue 12, finding 7): the projector applies large events
// in transactions of at most BatchBytes of event data (one event at least), so a run of
// 4 MiB events can never add up past PostgreSQL's 1 GB message limit and be retried
// forever. Here 24 events of ~256 KiB go through with a 1 MiB bound.
func TestBatchesAreBoundedInBytes(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 23)
	e.append(t, g.history(1, 1, 0))
	w := g.ws[0]
	const events, chunkBytes = 24, 256 << 10
	chunks := make([]string, chunkBytes/256)
	for i := range chunks {
		chunks[i] = strings.Repeat(string(rune('a'+i%26)), 255)
	}
	for i := 0; i < events; i++ {
		md := g.newItem(w, nil, false, "big")
		md.Chunks = chunks
		e.append(t, []batch{{w.stream, []eventstore.Record{g.committed(w, []domain.ItemOutcome{w.store(md)})}}})
	}
	var txs atomic.Int64
	p := e.projector(t, ModelWorkspaces, func(c *Config) {
		c.BatchBytes = 1 << 20
		c.OnApplied = func() { txs.Add(1) }
	})
	run(t, p.Run)
	e.caughtUp(t, ModelWorkspaces)
	checkAgainstSimulation(t, e, g)
	// Each transaction holds at most three of the ~260 KiB events: at least 8 of them.
	if n := txs.Load(); n < events/3 {
		t.Fatalf("%d events of %d KiB applied in %d transactions; a 1 MiB bound needs at least %d", events, chunkBytes>>10, n, events/3)
	}
}
