package service_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/projections/memmodel"
	"github.com/stacksync-es/syncservice/service"
)

// shareReadSetups are the read models a share is read back from: the PostgreSQL models
// written by the projector, the same written inline by the append (syncd's default),
// and the in-memory model.
var shareReadSetups = []struct {
	name string
	open func(t *testing.T) (*env, eventstore.Store, service.ReadModel)
}{
	{"postgres", func(t *testing.T) (*env, eventstore.Store, service.ReadModel) {
		e := newEnv(t)
		return e, e.store, e.q
	}},
	{"postgres-inline", func(t *testing.T) (*env, eventstore.Store, service.ReadModel) {
		e := newEnv(t)
		store, err := postgres.Open(context.Background(), postgres.Config{DSN: e.dsn, Inline: projections.Inline})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return e, store, e.q
	}},
	{"memmodel", func(t *testing.T) (*env, eventstore.Store, service.ReadModel) {
		st := memstore.New()
		t.Cleanup(func() { st.Close() })
		return nil, st, memmodel.New(st)
	}},
}

// TestShareReads checks the reads of PROTOCOL.md §8 (5.) after a share of alice's docs/
// (holding a.txt with 2 versions, and sub/b.txt) with bob, on every read model: W's
// getChanges no longer lists the moved items, S's does with ids and versions intact and
// docs' children at the root; a getChangesSince page of W whose range holds the move has
// them in movedOut and not in items, and moved-out items count against its limit;
// getItemVersions of a moved item is answered in S; getWorkspaces lists S for alice
// (name docs, mounted at docs) and bob (name docs, no mount point); quota is unchanged.
// A retried share changes none of it, and a re-share adds its member only.
func TestShareReads(t *testing.T) {
	for _, setup := range shareReadSetups {
		t.Run(setup.name, func(t *testing.T) {
			e, store, reads := setup.open(t)
			sh := newSharer(t, &shareEnv{t: t, store: store, reads: reads, ids: &ctxIDs{}})
			ctx := context.Background()
			var usedBefore int64
			testenv.Eventually(t, 10*time.Second, func() error {
				acc, err := sh.s.AccountInfo(ctx, &sh.alice, "alice@example.com")
				usedBefore = acc.QuotaUsed
				if err == nil && usedBefore != 11+20+30 {
					err = fmt.Errorf("alice uses %d bytes before the share", usedBefore)
				}
				return err
			})
			var stampW service.ChangesStamp
			if e != nil {
				var err error
				if stampW, _, err = sh.s.ChangesStamp(ctx, sh.alice, sh.home); err != nil {
					t.Fatal(err)
				}
			}
			res, err := sh.share("share-1", "bob@example.com")
			if err != nil {
				t.Fatal(err)
			}
			S := res.WorkspaceID
			testenv.Eventually(t, 10*time.Second, func() error { return checkShareReads(ctx, sh, S, usedBefore) })
			// A retry changes nothing; a re-share with carol only adds her (her name for S
			// is docs, no mount point), and the reads stay as they were.
			if again, err := sh.share("share-1", "bob@example.com"); err != nil || !again.Replayed || again.WorkspaceID != S {
				t.Fatalf("retried share: %+v %v", again, err)
			}
			if _, err := sh.share("share-2", "carol@example.com"); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 10*time.Second, func() error {
				wss, err := sh.s.Workspaces(ctx, sh.carol)
				if err != nil {
					return err
				}
				if i := slices.IndexFunc(wss, func(w protocol.WorkspaceInfo) bool { return w.ID == S }); i < 0 ||
					wss[i].Name != "docs" || wss[i].ParentItemID != nil || wss[i].LatestRevision != 1 {
					return fmt.Errorf("carol's workspaces after the re-share: %+v", wss)
				}
				return checkShareReads(ctx, sh, S, usedBefore)
			})
			if e == nil {
				return
			}
			// getChanges' cache stamp moves for W, and S has one.
			st, ok, err := sh.s.ChangesStamp(ctx, sh.alice, sh.home)
			if err != nil || !ok || st == stampW {
				t.Fatalf("W's changes stamp after the share: %+v %v %v, before %+v", st, ok, err, stampW)
			}
			if _, ok, err := sh.s.ChangesStamp(ctx, sh.bob, S); err != nil || !ok {
				t.Fatalf("S's changes stamp: %v %v", ok, err)
			}
			// The in-memory model answers as PostgreSQL does, and a rebuild agrees.
			pinReads(t, e, memmodel.New(store), []uuid.UUID{sh.home, S},
				map[uuid.UUID]string{sh.alice: "alice@example.com", sh.bob: "bob@example.com"})
			checkRebuildAgrees(t, e, store)
			moved := []domain.ItemID{*sh.a.ID, *sh.sub.ID, *sh.b.ID}
			if err := checkItemHomes(ctx, sh, S, moved, map[uuid.UUID]bool{sh.alice: true, sh.bob: true, sh.carol: true}); err != nil {
				t.Fatalf("after the rebuild: %v", err)
			}
		})
	}
}

// checkShareReads checks what TestShareReads says, once.
func checkShareReads(ctx context.Context, sh *sharer, S uuid.UUID, usedBefore int64) error {
	moved := []domain.ItemID{*sh.a.ID, *sh.sub.ID, *sh.b.ID}
	slices.Sort(moved)
	w, err := sh.s.Changes(ctx, sh.alice, sh.home)
	if err != nil {
		return err
	}
	if got := itemIDs(w); !reflect.DeepEqual(got, []domain.ItemID{*sh.docs.ID, *sh.c.ID}) {
		return fmt.Errorf("getChanges of W: %v", got)
	}
	s, err := sh.s.Changes(ctx, sh.bob, S)
	if err != nil {
		return err
	}
	// Parents first: a and sub at the root (by id), b below sub.
	if got := itemIDs(s); !reflect.DeepEqual(got, []domain.ItemID{*sh.a.ID, *sh.sub.ID, *sh.b.ID}) {
		return fmt.Errorf("getChanges of S: %v", got)
	}
	for _, md := range s {
		want := map[domain.ItemID]int64{*sh.a.ID: 2, *sh.sub.ID: 2, *sh.b.ID: 1}[*md.ID]
		if md.Version != want || md.WorkspaceID != S || (*md.ID != *sh.b.ID) != (md.ParentID == nil) {
			return fmt.Errorf("item %d in S: %+v", *md.ID, md)
		}
	}
	if err := checkMovedOutPages(ctx, sh, S, moved); err != nil {
		return err
	}
	if p, err := sh.s.ChangesSince(ctx, sh.bob, S, 0, 1000); err != nil || p.WorkspaceVersion != 1 ||
		!reflect.DeepEqual(itemIDs(p.Items), itemIDs(s)) || p.MovedOut != nil {
		return fmt.Errorf("getChangesSince of S from 0: %+v %v", p, err)
	}
	if err := checkItemHomes(ctx, sh, S, moved, map[uuid.UUID]bool{sh.alice: true, sh.bob: true}); err != nil {
		return err
	}
	vs, err := sh.s.ItemVersions(ctx, sh.bob, S, *sh.a.ID)
	if err != nil || len(vs) != 2 || vs[0].Version != 1 || vs[1].Size != 11 || vs[0].WorkspaceID != S {
		return fmt.Errorf("getItemVersions of a in S: %+v %v", vs, err)
	}
	if vs, err := sh.s.ItemVersions(ctx, sh.alice, sh.home, *sh.a.ID); err != nil || len(vs) != 0 {
		return fmt.Errorf("getItemVersions of a in W: %+v %v", vs, err)
	}
	for user, parent := range map[uuid.UUID]*domain.ItemID{sh.alice: sh.docs.ID, sh.bob: nil} {
		wss, err := sh.s.Workspaces(ctx, user)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(wss, func(w protocol.WorkspaceInfo) bool { return w.ID == S })
		if i < 0 || wss[i].Name != "docs" || !wss[i].IsShared || wss[i].OwnerID != sh.alice ||
			!reflect.DeepEqual(wss[i].ParentItemID, parent) || wss[i].LatestRevision != 1 || len(wss) != 2 {
			return fmt.Errorf("getWorkspaces of %s: %+v", user, wss)
		}
	}
	acc, err := sh.s.AccountInfo(ctx, &sh.alice, "alice@example.com")
	if err != nil || acc.QuotaUsed != usedBefore {
		return fmt.Errorf("alice's quotaUsed after the share: %d (%v), before %d", acc.QuotaUsed, err, usedBefore)
	}
	return nil
}

// checkItemHomes checks the read model's item → workspace lookup after the share: the
// moved items are S's, docs and c stay in W (alice's only). inS: the users to ask, and
// whether each is a member of S.
func checkItemHomes(ctx context.Context, sh *sharer, S uuid.UUID, moved []domain.ItemID, inS map[uuid.UUID]bool) error {
	want := map[domain.ItemID]uuid.UUID{*sh.docs.ID: sh.home, *sh.c.ID: sh.home}
	for _, id := range moved {
		want[id] = S
	}
	for id, ws := range want {
		for user, memberOfS := range inS {
			member := user == sh.alice || (ws == S && memberOfS)
			got, m, err := sh.reads.ItemWorkspace(ctx, id, user)
			if err != nil || got != ws || m != member {
				return fmt.Errorf("workspace of item %d for %s: %s member %v (%v), want %s member %v", id, user, got, m, err, ws, member)
			}
		}
	}
	return nil
}

// checkMovedOutPages pages W's history. W: version 1 stored docs, a, sub, b, c; 2
// changed a and moved sub (both moved now, so W keeps no row of version 2); 3 is the
// move of a, sub and b.
func checkMovedOutPages(ctx context.Context, sh *sharer, S uuid.UUID, moved []domain.ItemID) error {
	var out []protocol.MovedOutItem
	for _, id := range moved {
		out = append(out, protocol.MovedOutItem{ID: id, WorkspaceID: S})
	}
	all, err := sh.s.ChangesSince(ctx, sh.alice, sh.home, 0, 1000)
	if err != nil || all.WorkspaceVersion != 3 || all.ToVersion != 3 || all.HasMore ||
		!reflect.DeepEqual(itemIDs(all.Items), []domain.ItemID{*sh.docs.ID, *sh.c.ID}) || !reflect.DeepEqual(all.MovedOut, out) {
		return fmt.Errorf("getChangesSince of W from 0: %+v %v", all, err)
	}
	last, err := sh.s.ChangesSince(ctx, sh.alice, sh.home, 2, 1000)
	if err != nil || len(last.Items) != 0 || !reflect.DeepEqual(last.MovedOut, out) || last.ToVersion != 3 {
		return fmt.Errorf("getChangesSince of W from 2: %+v %v", last, err)
	}
	// limit 2: docs and c fill the first page; the three moved-out items do not fit in it.
	first, err := sh.s.ChangesSince(ctx, sh.alice, sh.home, 0, 2)
	if err != nil || first.ToVersion != 2 || !first.HasMore || len(first.Items) != 2 || first.MovedOut != nil {
		return fmt.Errorf("getChangesSince of W from 0, limit 2: %+v %v", first, err)
	}
	return nil
}

func itemIDs(items []domain.ItemMetadata) []domain.ItemID {
	out := make([]domain.ItemID, len(items))
	for i, md := range items {
		out[i] = *md.ID
	}
	return out
}

// checkRebuildAgrees rebuilds the workspaces model from the store and verifies it:
// the live model (written by the projector or inline) equals the replay, row for row.
// Both read the inline events, as syncctl's do (there are none when the projector
// writes the model): the live tables hold those the projector has not passed yet, so
// the rebuild carries them over and the verify applies them to its replay.
func checkRebuildAgrees(t *testing.T, e *env, store eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	cfg := projections.RebuildConfig{Pool: e.pool, Source: store, InlineAfter: postgres.ReadInlineAfter}
	testenv.Eventually(t, 10*time.Second, func() error {
		r, err := projections.Verify(ctx, cfg, projections.ModelWorkspaces, 10)
		if err == nil && r.Count != 0 {
			err = fmt.Errorf("live model differs from its replay: %+v", r.Diffs)
		}
		return err
	})
	if _, err := projections.Rebuild(ctx, cfg, projections.ModelWorkspaces); err != nil {
		t.Fatal(err)
	}
	if r, err := projections.Verify(ctx, cfg, projections.ModelWorkspaces, 10); err != nil || r.Count != 0 {
		t.Fatalf("verify after rebuild: %+v %v", r, err)
	}
}
