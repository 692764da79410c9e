package projections

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// modelEvents counts the events of the batches that the model applies.
func modelEvents(m *Model, bs []batch) int64 {
	var n int64
	for _, b := range bs {
		if strings.HasPrefix(b.stream, m.streamPrefix) {
			n += int64(len(b.recs))
		}
	}
	return n
}

// checkAgainstSimulation compares the workspaces' versions and used bytes with the generator's.
func checkAgainstSimulation(t *testing.T, e *env, g *gen) {
	t.Helper()
	for _, w := range g.ws {
		d, found, err := e.q.Workspace(context.Background(), w.id)
		if err != nil || !found {
			t.Fatalf("workspace %s: %v %v", w.id, found, err)
		}
		if d.Version != w.version || d.UsedBytes != w.used {
			t.Fatalf("workspace %s at v%d used %d, simulation v%d used %d", w.id, d.Version, d.UsedBytes, w.version, w.used)
		}
		items, _, err := e.q.Changes(context.Background(), w.id)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != len(w.items) {
			t.Fatalf("workspace %s: %d items, simulation %d", w.id, len(items), len(w.items))
		}
		for _, it := range items {
			if it.Version != w.items[*it.ID].Version {
				t.Fatalf("item %d v%d, simulation v%d", *it.ID, it.Version, w.items[*it.ID].Version)
			}
		}
	}
}

// TestCrashBetweenApplyAndCheckpoint fails batch transactions after their rows are
// written and before the checkpoint is; the projector restarts from the checkpoint, and
// the result equals a clean rebuild, with every event applied exactly once.
func TestCrashBetweenApplyAndCheckpoint(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 11)
	bs := g.history(3, 4, 300)
	e.append(t, bs)
	var crashes atomic.Int64
	projs := map[string]*Projector{}
	for _, m := range Models() {
		var calls atomic.Int64
		p := e.projector(t, m.Name(), func(c *Config) {
			c.BatchSize = 7
			c.afterApply = func() error {
				if n := calls.Add(1); n%4 == 2 && n < 40 {
					crashes.Add(1)
					// Transient, as a crash is: a failure that is not would be isolated
					// (the batch split and one event set aside), see poison_test.go.
					return eventstore.TransientError(errors.New("injected crash between apply and checkpoint"))
				}
				return nil
			}
		})
		projs[m.Name()] = p
		run(t, p.Run)
	}
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	if crashes.Load() < 10 {
		t.Fatalf("only %d crashes injected", crashes.Load())
	}
	for _, m := range Models() {
		st := projs[m.Name()].Status()
		if want := modelEvents(m, bs); st.Applied != want {
			t.Errorf("%s applied %d events, history has %d", m.Name(), st.Applied, want)
		}
		e.verifyClean(t, m.Name())
	}
	checkAgainstSimulation(t, e, g)
}

// TestProjectorKilledAndRestarted cancels running projectors at arbitrary points (in
// the middle of batch transactions) while commits land, restarting new ones each time.
func TestProjectorKilledAndRestarted(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 12)
	e.append(t, g.history(3, 3, 100))
	for round := range 6 {
		for range 40 {
			w := g.ws[g.rng.IntN(len(g.ws))]
			e.append(t, []batch{{w.stream, []eventstore.Record{g.randomCommit(w)}}})
		}
		var stops []func() error
		for _, m := range Models() {
			p := e.projector(t, m.Name(), func(c *Config) { c.BatchSize = 3 })
			stops = append(stops, run(t, p.Run))
		}
		time.Sleep(time.Duration(10+round*15) * time.Millisecond) // let it get somewhere, then kill it
		for _, stop := range stops {
			if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		}
	}
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	e.verifyClean(t, ModelWorkspaces)
	e.verifyClean(t, ModelAccounts)
	checkAgainstSimulation(t, e, g)
}

// TestApplyIdempotent applies the whole history a second time, bypassing the
// checkpoint, in differently sized batches: the version guards leave every row as it was.
func TestApplyIdempotent(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 13)
	e.append(t, g.history(3, 4, 200))
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	ctx := context.Background()
	evs, err := e.store.ReadAll(ctx, eventstore.Start, 100000)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Models() {
		before := dump(t, e.pool, m, m.Schema())
		for _, size := range []int{1, 17, len(evs)} {
			err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `LOCK TABLE `+m.Schema()+`.checkpoint`); err != nil { // keep the projector out
					return err
				}
				if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+m.Schema()); err != nil {
					return err
				}
				for i := 0; i < len(evs); i += size {
					var ds []decoded
					for j := i; j < min(i+size, len(evs)); j++ {
						if !strings.HasPrefix(evs[j].Stream, m.streamPrefix) {
							continue
						}
						d, err := decode(&evs[j])
						if err != nil {
							return err
						}
						ds = append(ds, d)
					}
					b := &pgx.Batch{}
					m.queue(b, m.Schema(), ds, false)
					if err := sendBatch(ctx, tx, b); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: reapply in batches of %d: %v", m.Name(), size, err)
			}
			if after := dump(t, e.pool, m, m.Schema()); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s: reapplying in batches of %d changed the rows", m.Name(), size)
			}
		}
	}
}

// TestTwoProjectorsRacing runs two projectors per model: under the leader lock only
// one applies, and the standby takes over when the active one stops. Without the lock
// (both following at once), the checkpoint check still lets exactly one apply each batch.
func TestTwoProjectorsRacing(t *testing.T) {
	t.Run("leader", func(t *testing.T) {
		e := newEnv(t)
		g := newGen(t, 14)
		bs := g.history(3, 3, 150)
		e.append(t, bs)
		m := workspacesModel
		p1 := e.projector(t, m.Name(), func(c *Config) { c.BatchSize = 5 })
		p2 := e.projector(t, m.Name(), func(c *Config) { c.BatchSize = 5 })
		stop1, stop2 := run(t, p1.Run), run(t, p2.Run)
		e.caughtUp(t, m.Name())
		a1, a2 := p1.Status().Applied, p2.Status().Applied
		if want := modelEvents(m, bs); a1+a2 != want || (a1 != 0 && a2 != 0) {
			t.Fatalf("applied %d and %d, want %d by one of them", a1, a2, want)
		}
		active, stopActive, standby := p1, stop1, p2
		if a2 > 0 {
			active, stopActive, standby = p2, stop2, p1
		}
		if !active.Status().Active || standby.Status().Active {
			t.Fatalf("active flags: %v %v", active.Status().Active, standby.Status().Active)
		}
		if err := stopActive(); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		w := g.ws[0]
		e.append(t, []batch{{w.stream, []eventstore.Record{g.randomCommit(w), g.randomCommit(w)}}})
		e.caughtUp(t, m.Name())
		if standby.Status().Applied != 2 {
			t.Fatalf("standby applied %d after taking over, want 2", standby.Status().Applied)
		}
		e.verifyClean(t, m.Name())
	})
	t.Run("no leader", func(t *testing.T) {
		e := newEnv(t)
		g := newGen(t, 15)
		bs := g.history(3, 4, 300)
		e.append(t, bs)
		for _, m := range Models() {
			var ps []*Projector
			for range 2 {
				p := e.projector(t, m.Name(), func(c *Config) { c.BatchSize = 3 })
				ps = append(ps, p)
				run(t, p.follow) // bypass the leader lock
			}
			e.caughtUp(t, m.Name())
			a1, a2 := ps[0].Status().Applied, ps[1].Status().Applied
			if want := modelEvents(m, bs); a1+a2 != want {
				t.Fatalf("%s: applied %d + %d, want %d in all", m.Name(), a1, a2, want)
			}
			t.Logf("%s: the racing projectors applied %d and %d events", m.Name(), a1, a2)
			e.verifyClean(t, m.Name())
		}
		checkAgainstSimulation(t, e, g)
	})
}

func schemaExists(t *testing.T, e *env, name string) bool {
	var ok bool
	if err := e.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestRebuildAndVerify: a rebuild of a generated history equals the live model; verify
// reports deliberately corrupted rows; a rebuild under load (commits landing, projector
// running, reads running) swaps in a correct model that the projector then keeps up;
// an interrupted rebuild leaves the live tables untouched.
func TestRebuildAndVerify(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 16)
	e.append(t, g.history(4, 5, 400))
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	e.verifyClean(t, ModelWorkspaces)
	e.verifyClean(t, ModelAccounts)
	ctx := context.Background()

	// Corrupt the live models.
	for _, q := range []string{
		`UPDATE proj_workspaces.items SET filename = 'corrupt' WHERE item_id = (SELECT min(item_id) FROM proj_workspaces.items)`,
		`DELETE FROM proj_workspaces.members WHERE (workspace_id, user_id) =
			(SELECT workspace_id, user_id FROM proj_workspaces.members ORDER BY 1, 2 LIMIT 1)`,
		`INSERT INTO proj_accounts.users (user_id, name, email, quota_limit, created_at, stream_version)
			VALUES (gen_random_uuid(), 'ghost', 'ghost@example.com', 0, now(), 1)`,
	} {
		if _, err := e.pool.Exec(ctx, q); err != nil {
			t.Fatalf("corrupt: %v", err)
		}
	}
	cfg := RebuildConfig{Pool: e.pool, Source: e.store, BatchSize: 50, Decoders: 3, Logger: e.log}
	res, err := Verify(ctx, cfg, ModelWorkspaces, 10)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]int{}
	for _, d := range res.Diffs {
		tables[d.Table]++
		t.Logf("found %s %s: live %s rebuilt %s", d.Table, d.Key, d.Live, d.Rebuilt)
	}
	if res.Count != 2 || tables["items"] != 1 || tables["members"] != 1 {
		t.Fatalf("verify found %d differences %v, want the corrupted item and the deleted member", res.Count, tables)
	}
	for _, d := range res.Diffs {
		if d.Table == "members" && (d.Live != "" || d.Rebuilt == "") {
			t.Errorf("deleted member reported as live %q rebuilt %q", d.Live, d.Rebuilt)
		}
		if d.Table == "items" && !strings.Contains(d.Live, "corrupt") {
			t.Errorf("corrupted item reported as %q", d.Live)
		}
	}
	res, err = Verify(ctx, cfg, ModelAccounts, 10)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 1 || res.Diffs[0].Table != "users" || !strings.Contains(res.Diffs[0].Live, "ghost") || res.Diffs[0].Rebuilt != "" {
		t.Fatalf("verify accounts: %+v", res)
	}

	// An interrupted rebuild leaves the live tables as they were.
	before := dump(t, e.pool, workspacesModel, "proj_workspaces")
	ictx, cancel := context.WithCancel(ctx)
	icfg := cfg
	icfg.Progress = func(Progress) { cancel() }
	if _, err := Rebuild(ictx, icfg, ModelWorkspaces); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v", err)
	}
	if !reflect.DeepEqual(before, dump(t, e.pool, workspacesModel, "proj_workspaces")) {
		t.Fatal("an interrupted rebuild changed the live tables")
	}
	if schemaExists(t, e, "proj_workspaces_next") {
		t.Error("the interrupted rebuild left its schema behind")
	}

	// Rebuild under load: commits land, the projector runs, readers read.
	var mu sync.Mutex // guards g
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var loadErr, readErr error
	var loaded eventstore.Position // the last append's position
	wg.Add(2)
	go func() {
		defer wg.Done()
		for load.Err() == nil {
			mu.Lock()
			w := g.ws[g.rng.IntN(len(g.ws))]
			rec := g.randomCommit(w)
			mu.Unlock()
			res, err := e.store.Append(ctx, w.stream, eventstore.Any(), rec)
			if err != nil {
				loadErr = err
				return
			}
			loaded = res.Position
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for load.Err() == nil {
			for _, w := range g.ws {
				items, v, err := e.q.Changes(ctx, w.id)
				if err == nil && len(items) == 0 && v > 0 {
					err = errors.New("empty read of a non-empty workspace")
				}
				if err != nil {
					readErr = err
					return
				}
			}
		}
	}()
	var progress []Progress
	cfg.Progress = func(p Progress) { progress = append(progress, p) }
	rres, err := Rebuild(ctx, cfg, ModelWorkspaces)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let commits land after the swap too
	stopLoad()
	wg.Wait()
	if loadErr != nil || readErr != nil {
		t.Fatalf("during the rebuild: append %v, read %v", loadErr, readErr)
	}
	if len(progress) == 0 || progress[len(progress)-1].Events == 0 {
		t.Errorf("no progress reported")
	}
	t.Logf("rebuilt %d events to %s in %v", rres.Events, rres.Position, rres.Elapsed)
	// The load's last append, not the store's visible tail: other tests' transactions on
	// the same PostgreSQL cluster may hold the global order's horizon below it for a while.
	e.mu.Lock()
	for _, p := range []eventstore.Position{loaded, rres.Position} {
		if e.appended.Less(p) {
			e.appended = p
		}
	}
	e.mu.Unlock()
	e.caughtUp(t, ModelWorkspaces)
	e.verifyClean(t, ModelWorkspaces)
	mu.Lock()
	checkAgainstSimulation(t, e, g)
	mu.Unlock()
	var idx []string
	rows, err := e.pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = 'proj_workspaces'
		AND tablename IN ('items', 'item_history') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		idx = append(idx, n)
	}
	if rows.Close(); !reflect.DeepEqual(idx, []string{"item_history_pkey", "item_history_ws_version_idx", "items_item_idx", "items_pkey"}) {
		t.Errorf("indexes of items and item_history after the rebuild: %v", idx)
	}
	var keys []string
	if err := e.pool.QueryRow(ctx, `SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint
		WHERE connamespace = 'proj_workspaces'::regnamespace AND contype = 'p'`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if want := []string{"checkpoint_pkey", "item_history_pkey", "items_pkey", "members_pkey", "moved_out_pkey", "schema_migrations_pkey",
		"set_aside_pkey", "workspaces_pkey"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("primary keys after the rebuild: %v, want %v", keys, want)
	}
	for _, s := range []string{"proj_workspaces_next", "proj_workspaces_old", "proj_workspaces_verify"} {
		if schemaExists(t, e, s) {
			t.Errorf("schema %s left behind", s)
		}
	}

	// Accounts: rebuild removes the ghost.
	if _, err := Rebuild(ctx, RebuildConfig{Pool: e.pool, Source: e.store}, ModelAccounts); err != nil {
		t.Fatal(err)
	}
	e.verifyClean(t, ModelAccounts)
	if _, found, err := e.q.UserByEmail(ctx, "ghost@example.com"); found || err != nil {
		t.Errorf("ghost after rebuild: %v %v", found, err)
	}
}

func TestRebuildIsExclusive(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	release, err := exclusive(ctx, e.pool, workspacesModel)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(ctx, RebuildConfig{Pool: e.pool, Source: e.store}, ModelWorkspaces, 1)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("verify during a rebuild: %v, want ErrBusy", err)
	}
	release()
	if _, err := Verify(ctx, RebuildConfig{Pool: e.pool, Source: e.store}, ModelWorkspaces, 1); err != nil {
		t.Fatal(err)
	}
}

func TestStatusAndLag(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 17)
	bs := g.history(2, 2, 30)
	e.append(t, bs)
	var total int64
	for _, b := range bs {
		total += int64(len(b.recs))
	}
	ctx := context.Background()
	st, err := StatusOf(ctx, e.pool, e.store, ModelWorkspaces, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Position.IsZero() || st.Lag.Events != 10 || !st.Lag.Capped || st.Lag.Behind <= 0 {
		testenv.Eventually(t, 10*time.Second, func() error { // the store's horizon may lag a moment
			st, err = StatusOf(ctx, e.pool, e.store, ModelWorkspaces, 10)
			if err == nil && (st.Lag.Events != 10 || !st.Lag.Capped) {
				err = errors.New("lag not seen yet")
			}
			return err
		})
	}
	p := e.projector(t, ModelWorkspaces, nil)
	run(t, p.Run)
	e.caughtUp(t, ModelWorkspaces)
	testenv.Eventually(t, 10*time.Second, func() error {
		lag, err := p.Lag(ctx)
		if err == nil && (lag.Events != 0 || lag.Behind != 0) {
			err = errors.New("still lagging")
		}
		return err
	})
	st, err = StatusOf(ctx, e.pool, e.store, ModelWorkspaces, 10)
	if err != nil || st.Lag.Events != 0 || st.Position.IsZero() || st.Events != total {
		t.Fatalf("status after catching up: %+v %v", st, err)
	}
	// The projector notes a batch's checkpoint in memory just after its transaction
	// commits: the stored one may be seen a moment before.
	testenv.Eventually(t, 10*time.Second, func() error {
		if ps := p.Status(); ps.Position != st.Position || !ps.Active || ps.LastEventAt.IsZero() {
			return fmt.Errorf("projector status %+v, stored %+v", ps, st)
		}
		return nil
	})
}
