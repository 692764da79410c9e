package projections

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// decider appends domain-decided events to one workspace stream of a store.
type decider struct {
	t    *testing.T
	w    *domain.Workspace
	st   eventstore.Store
	prev string // chain hash of the last event
}

// records encodes evs, folding them into the decider's state.
func (d *decider) records(evs []domain.Event) eventstore.StreamAppend {
	d.t.Helper()
	a := eventstore.StreamAppend{Stream: domain.WorkspaceStream(d.w.ID()), Expected: eventstore.Exact(d.w.StreamVersion())}
	for _, e := range evs {
		typ, data, err := domain.Encode(e)
		if err != nil {
			d.t.Fatal(err)
		}
		a.Records = append(a.Records, eventstore.Record{ID: uuid.New(), Type: typ, Data: data})
		d.w.Evolve(e)
		d.prev = domain.ChainHash(typ, data)
	}
	return a
}

func (d *decider) do(cmd domain.WorkspaceCommand) {
	d.t.Helper()
	dec, err := d.w.Decide(cmd)
	if err != nil {
		d.t.Fatal(err)
	}
	a := d.records(dec.Events)
	if _, err := d.st.Append(context.Background(), a.Stream, a.Expected, a.Records...); err != nil {
		d.t.Fatal(err)
	}
}

// shareHistory appends: W holds docs (1) with a (2, then changed) and sub (3) holding
// b (4), and c (5) at the root; docs is shared; then c changes in W and a in S.
func shareHistory(t *testing.T, st eventstore.Store) (w, s *decider) {
	owner, dev := uuid.New(), uuid.New()
	w = &decider{t: t, w: domain.NewWorkspace(uuid.New()), st: st}
	home := w.w.ID()
	w.do(domain.CreateWorkspace{WorkspaceID: home, Name: "home", OwnerID: owner, At: t0})
	item := func(temp int64, parent *domain.ItemID, folder bool, name string) domain.ItemMetadata {
		m := domain.ItemMetadata{TempID: &temp, Version: 1, ParentID: parent, Status: domain.StatusNew, ModifiedAt: t0,
			Chunks: []string{}, IsFolder: folder, Filename: name, Mimetype: "inode/directory"}
		if !folder {
			m.Size, m.Checksum, m.Chunks, m.Mimetype = 10, 1, []string{"c"}, "text/plain"
		}
		return m
	}
	commit := func(d *decider, req string, ids []domain.ItemID, items ...domain.ItemMetadata) {
		d.do(domain.Commit{RequestID: req, WorkspaceID: d.w.ID(), UserID: owner, DeviceID: dev, At: t0.Add(time.Minute),
			NewItemIDs: ids, Items: items, PrevHash: d.prev})
	}
	commit(w, "tree", []domain.ItemID{1, 2, 3, 4, 5}, item(-1, nil, true, "docs"), item(-2, itemID(-1), false, "a"),
		item(-3, itemID(-1), true, "sub"), item(-4, itemID(-3), false, "b"), item(-5, nil, false, "c"))
	changed := func(d *decider, id domain.ItemID, size int64) domain.ItemMetadata {
		m, _ := d.w.Item(id)
		m.TempID, m.Version, m.Status, m.Size = nil, m.Version+1, domain.StatusChanged, size
		return m
	}
	commit(w, "a2", nil, changed(w, 2, 20))
	cmd := domain.ShareFolder{RequestID: "share", UserID: owner, SourceID: home, FolderID: 1,
		Members: []uuid.UUID{uuid.New()}, At: t0.Add(2 * time.Minute), SourcePrevHash: w.prev}
	s = &decider{t: t, w: domain.NewWorkspace(w.w.ShareTarget(cmd)), st: st}
	dec, err := domain.DecideShare(w.w, s.w, cmd)
	if err != nil {
		t.Fatal(err)
	}
	multi, ok := st.(eventstore.MultiAppender)
	if !ok {
		t.Fatal("the store cannot append to two streams at once")
	}
	if _, err := multi.AppendMulti(context.Background(), []eventstore.StreamAppend{w.records(dec.Source), s.records(dec.Target)}); err != nil {
		t.Fatal(err)
	}
	commit(w, "c2", nil, changed(w, 5, 50))
	commit(s, "a3", nil, changed(s, 2, 30))
	return w, s
}

// The workspaces model applies a share idempotently and in any batching: the live
// model (projected in the projector's batches), the whole history applied as one batch
// (a Committed of a moved item and the move in the same batch) into a fresh schema, and
// the live model with every event applied once more (a replayed older commit of W must
// not bring the moved items back to W) hold the same rows; verify agrees, and a
// rebuild swaps in the same rows.
func TestShareAppliesInAnyBatchingAndIdempotently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, sh := shareHistory(t, e.store)
	e.projectAll(t)
	m := workspacesModel
	// The global order shows an append only once every older transaction of the
	// cluster has ended (other tests' too): wait until it shows all of them.
	var all []decoded
	testenv.Eventually(t, 20*time.Second, func() error {
		recs, err := e.store.ReadAll(ctx, eventstore.Start, 1000)
		if err != nil {
			return err
		}
		all = all[:0]
		for i := range recs {
			if strings.HasPrefix(recs[i].Stream, m.streamPrefix) {
				d, err := decode(&recs[i])
				if err != nil {
					return err
				}
				all = append(all, d)
			}
		}
		if want := w.w.StreamVersion() + sh.w.StreamVersion(); uint64(len(all)) != want {
			return fmt.Errorf("the global order shows %d workspace events of %d", len(all), want)
		}
		e.mu.Lock()
		e.appended = recs[len(recs)-1].Position
		e.mu.Unlock()
		return nil
	})
	e.caughtUp(t, ModelWorkspaces)
	live := rows(t, e, m, m.Schema())
	if n := len(live["moved_out"]); n != 3 {
		t.Fatalf("moved_out has %d rows, want 3 (a, sub, b): %v", n, live["moved_out"])
	}
	apply := func(schema string, ds []decoded) {
		t.Helper()
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
		b := &pgx.Batch{}
		queueWorkspaces(b, schema, ds, false)
		if err := sendBatch(ctx, tx, b); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const scratch = "proj_workspaces_share_test"
	if _, err := e.pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+scratch+` CASCADE`); err != nil {
		t.Fatal(err)
	}
	if err := migrateSchema(ctx, e.pool, m, scratch); err != nil {
		t.Fatal(err)
	}
	apply(scratch, all)
	if got := rows(t, e, m, scratch); !reflect.DeepEqual(got, live) {
		t.Errorf("the history in one batch:\n got %v\nwant %v", got, live)
	}
	for i, d := range all {
		apply(m.Schema(), []decoded{d})
		if _, moved := d.event.(domain.ItemsMovedOut); moved {
			// The events before the move applied again after it, and the move not.
			for _, older := range all[:i] {
				apply(m.Schema(), []decoded{older})
			}
			if got := rows(t, e, m, m.Schema()); !reflect.DeepEqual(got, live) {
				t.Errorf("W's commits before the move applied again after it:\n got %v\nwant %v", got, live)
			}
		}
	}
	if got := rows(t, e, m, m.Schema()); !reflect.DeepEqual(got, live) {
		t.Errorf("every event applied again:\n got %v\nwant %v", got, live)
	}
	e.verifyClean(t, ModelWorkspaces)
	// A rebuild (bulk: item versions copied, then the moved items' versions trimmed and
	// items filled, the indexes built meanwhile) swaps in the same rows.
	if _, err := Rebuild(ctx, RebuildConfig{Pool: e.pool, Source: e.store, Logger: e.log}, ModelWorkspaces); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, e, m, m.Schema()); !reflect.DeepEqual(got, live) {
		t.Errorf("rebuilt:\n got %v\nwant %v", got, live)
	}
}

// rows dumps the model's data tables (not the checkpoint) in schema.
func rows(t *testing.T, e *env, m *Model, schema string) map[string][]string {
	t.Helper()
	d := dump(t, e.pool, m, schema)
	delete(d, "checkpoint")
	return d
}
