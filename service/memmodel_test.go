package service_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections/memmodel"
	"github.com/stacksync-es/syncservice/service"
)

// The in-memory read model the RPC tests run on (projections/memmodel) answers exactly
// as the PostgreSQL read models do, on the same history: every query of
// service.ReadModel, over a history with a tree, changes, renames, moves, deletes, failed
// items, a second member and a shared workspace.
func TestMemModelAnswersAsThePostgreSQLReadModel(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	alice, home, dev := userWithDevice(t, e, s, "alice")
	bob, bobHome, _ := userWithDevice(t, e, s, "bob")
	shared, err := s.CreateWorkspace(ctx, alice, "team", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, shared, bob, "alice's team"); err != nil {
		t.Fatal(err)
	}

	commit := func(ws uuid.UUID, req string, items ...domain.ItemMetadata) service.CommitResult {
		t.Helper()
		res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: req, UserID: alice, WorkspaceID: ws, DeviceID: dev, Items: items})
		if err != nil {
			t.Fatalf("commit %s: %v", req, err)
		}
		return res
	}
	// next is the version v of m with the given status.
	next := func(m domain.ItemMetadata, status domain.Status, v int64) domain.ItemMetadata {
		m.ID, m.TempID, m.Version, m.Status = ptr(*m.ID), nil, v, status
		m.Size, m.Chunks = 99, []string{"c2", "c3"}
		return m
	}
	for _, ws := range []uuid.UUID{home, shared} {
		res := commit(ws, "tree", folder(-1, "docs"), file(-2, "a.txt", ptr(domain.ItemID(-1)), 10), file(-3, "c.txt", nil, 5))
		docs, a := *res.Event.Items[0].Metadata, *res.Event.Items[1].Metadata
		renamed := next(a, domain.StatusRenamed, 3)
		renamed.Filename = "b.txt"
		moved := next(a, domain.StatusMoved, 4)
		moved.Filename, moved.ParentID = "b.txt", nil
		deleted := next(docs, domain.StatusDeleted, 2)
		deleted.Size, deleted.Chunks = 0, []string{}
		commit(ws, "changed", next(a, domain.StatusChanged, 2))
		commit(ws, "renamed", renamed)
		commit(ws, "moved", moved, next(a, domain.StatusChanged, 2)) // the second: wrongVersion
		commit(ws, "deleted", deleted)
	}

	mem := memmodel.New(e.store)
	users := map[uuid.UUID]string{alice: "alice@example.com", bob: "bob@example.com"}
	pinReads(t, e, mem, []uuid.UUID{home, bobHome, shared}, users)
}

// pinReads requires mem to answer every query of service.ReadModel as the env's
// PostgreSQL read models do, on the workspaces wss and the users (id → e-mail).
func pinReads(t *testing.T, e *env, mem *memmodel.Model, wss []uuid.UUID, users map[uuid.UUID]string) {
	t.Helper()
	ctx := context.Background()
	// mem reads the global order, which shows an append only once every older
	// transaction of the database cluster has ended (other tests' too): wait until it
	// shows every event of these streams, or both models could agree on a prefix and
	// then part while the rest becomes visible.
	streams := map[string]bool{}
	for _, ws := range wss {
		streams[domain.WorkspaceStream(ws)] = true
	}
	for u := range users {
		streams[domain.UserStream(u)] = true
	}
	testenv.Eventually(t, 20*time.Second, func() error { return globalOrderShows(ctx, e.store, streams) })
	// The PostgreSQL models are projected asynchronously: compare once they caught up.
	testenv.Eventually(t, 15*time.Second, func() error {
		for _, ws := range wss {
			want, wv, err := mem.Changes(ctx, ws)
			if err != nil {
				return err
			}
			got, gv, err := e.q.Changes(ctx, ws)
			if err != nil {
				return err
			}
			if wv != gv || !reflect.DeepEqual(want, got) {
				return fmt.Errorf("Changes(%s): memmodel v%d %+v, PostgreSQL v%d %+v", ws, wv, want, gv, got)
			}
			wp, err1 := mem.ChangesSince(ctx, ws, 0, 1000)
			gp, err2 := e.q.ChangesSince(ctx, ws, 0, 1000)
			if err1 != nil || err2 != nil || wp.WorkspaceVersion != gp.WorkspaceVersion {
				return fmt.Errorf("ChangesSince(%s): memmodel v%d %v, PostgreSQL v%d %v", ws, wp.WorkspaceVersion, err1, gp.WorkspaceVersion, err2)
			}
		}
		// The accounts model is projected by its own projector, which may lag.
		for u := range users {
			want, err1 := mem.OwnerUsageExcept(ctx, u, uuid.Nil)
			got, err2 := e.q.OwnerUsageExcept(ctx, u, uuid.Nil)
			if err1 != nil || err2 != nil || want != got {
				return fmt.Errorf("OwnerUsageExcept(%s): memmodel %d %v, PostgreSQL %d %v", u, want, err1, got, err2)
			}
		}
		return nil
	})
	for _, ws := range wss {
		for _, limit := range []int{1, 2, 1000} {
			for since := int64(0); ; {
				want, err1 := mem.ChangesSince(ctx, ws, since, limit)
				got, err2 := e.q.ChangesSince(ctx, ws, since, limit)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
					t.Fatalf("ChangesSince(%s, %d, %d): memmodel %+v %v, PostgreSQL %+v %v", ws, since, limit, want, err1, got, err2)
				}
				if !got.HasMore {
					break
				}
				since = got.ToVersion
			}
		}
		items, _, _ := mem.Changes(ctx, ws)
		for _, it := range items {
			want, err1 := mem.ItemVersions(ctx, ws, *it.ID)
			got, err2 := e.q.ItemVersions(ctx, ws, *it.ID)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
				t.Fatalf("ItemVersions(%d): memmodel %+v %v, PostgreSQL %+v %v", *it.ID, want, err1, got, err2)
			}
			for u := range users {
				same(t, "ItemWorkspace", func(r service.ReadModel) (any, error) {
					home, member, err := r.ItemWorkspace(ctx, *it.ID, u)
					if err == nil && home != ws {
						err = fmt.Errorf("item %d of %s found in %s", *it.ID, ws, home)
					}
					return fmt.Sprint(home, member), err
				}, mem, e.q)
			}
		}
		for u := range users {
			same(t, "ItemWorkspace of no item", func(r service.ReadModel) (any, error) {
				home, member, err := r.ItemWorkspace(ctx, 1<<50, u)
				return fmt.Sprint(home, member), err
			}, mem, e.q)
		}
	}
	for u, email := range users {
		same(t, "WorkspacesOf", func(r service.ReadModel) (any, error) { return r.WorkspacesOf(ctx, u) }, mem, e.q)
		same(t, "AccountByEmail", func(r service.ReadModel) (any, error) {
			a, ok, err := r.AccountByEmail(ctx, email)
			return fmt.Sprint(a, ok), err
		}, mem, e.q)
		same(t, "OwnerUsageExcept", func(r service.ReadModel) (any, error) { return r.OwnerUsageExcept(ctx, u, uuid.Nil) }, mem, e.q)
		for _, ws := range append(wss, uuid.New()) {
			same(t, "Membership", func(r service.ReadModel) (any, error) {
				ex, mb, err := r.Membership(ctx, ws, u)
				return fmt.Sprint(ex, mb), err
			}, mem, e.q)
		}
	}
}

// same requires q to give the same answer on both read models.
func same(t *testing.T, what string, q func(service.ReadModel) (any, error), a, b service.ReadModel) {
	t.Helper()
	want, err1 := q(a)
	got, err2 := q(b)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
		t.Fatalf("%s: memmodel %+v %v, PostgreSQL %+v %v", what, want, err1, got, err2)
	}
}

// globalOrderShows reports whether the store's global order shows every event of the
// streams (as many as each stream's version).
func globalOrderShows(ctx context.Context, store eventstore.Store, streams map[string]bool) error {
	seen := map[string]uint64{}
	for from := eventstore.Start; ; {
		recs, err := store.ReadAll(ctx, from, 1000)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if streams[r.Stream] {
				seen[r.Stream]++
			}
		}
		if len(recs) < 1000 {
			break
		}
		from = recs[len(recs)-1].Position
	}
	for st := range streams {
		v, err := store.StreamVersion(ctx, st)
		if err != nil {
			return err
		}
		if seen[st] != v {
			return fmt.Errorf("the global order shows %d of the %d events of %s", seen[st], v, st)
		}
	}
	return nil
}
