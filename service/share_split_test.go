package service_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections/memmodel"
)

// TestShareSplitReads shares a folder whose move exceeds one event (events of at most
// 1,000 bytes here: 303 items, so both W's ids and S's history are split in parts of
// one atomic append) on every read model, and checks the reads as for one event: W
// without the moved items and every one of them in movedOut, S with all of them at
// workspaceVersion 1, quota unchanged; the result and a retried share carry the joined
// move; the stored parts chain; a share above MaxShareBytes is refused and appends
// nothing; the in-memory model answers as PostgreSQL does and a
// rebuild agrees with the live model.
func TestShareSplitReads(t *testing.T) {
	for _, setup := range shareReadSetups {
		t.Run(setup.name, func(t *testing.T) {
			e, store, reads := setup.open(t)
			env := &shareEnv{t: t, store: store, reads: reads, ids: &ctxIDs{}}
			sh := newSharer(t, env)
			ctx := context.Background()
			var more []domain.ItemMetadata
			for i := range 300 {
				more = append(more, file(int64(-100-i), fmt.Sprintf("f%03d.txt", i), sh.docs.ID, int64(i)))
			}
			sh.commit(t, sh.home, "more", more...)
			var usedBefore int64
			testenv.Eventually(t, 10*time.Second, func() error {
				acc, err := sh.s.AccountInfo(ctx, &sh.alice, "alice@example.com")
				usedBefore = acc.QuotaUsed
				if err == nil && usedBefore != 11+20+30+299*300/2 {
					err = fmt.Errorf("alice uses %d bytes before the share", usedBefore)
				}
				return err
			})
			// Above Limits.MaxShareBytes the share is InvalidRequest, and nothing is appended.
			tiny := *env
			tiny.limits = domain.Limits{MaxEventBytes: 1000, MaxShareBytes: 50_000}
			sh.s = tiny.service(store)
			wBefore := len(readChain(t, store, domain.WorkspaceStream(sh.home)))
			if _, err := sh.share("share-0", "bob@example.com"); !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), "MaxShareBytes") {
				t.Fatalf("a share above MaxShareBytes: %v", err)
			}
			if n := len(readChain(t, store, domain.WorkspaceStream(sh.home))); n != wBefore {
				t.Fatalf("a refused share appended to W: %d events, were %d", n, wBefore)
			}
			if n := len(readChain(t, store, domain.WorkspaceStream(domain.SharedWorkspaceID(sh.alice, "share-0")))); n != 0 {
				t.Fatalf("a refused share appended %d events to S", n)
			}
			small := *env
			small.limits = domain.Limits{MaxEventBytes: 1000}
			sh.s = small.service(store)
			res, err := sh.share("share-1", "bob@example.com")
			if err != nil {
				t.Fatal(err)
			}
			S := res.WorkspaceID
			if res.MovedOut == nil || len(res.MovedOut.ItemIDs) != 303 || res.MovedIn == nil || len(res.MovedIn.Items) != 303 {
				t.Fatalf("the share's joined move: %+v", res)
			}
			outs, ins := countParts(t, store, sh.home), countParts(t, store, S)
			if outs < 2 || ins < 2 {
				t.Fatalf("parts stored: %d in W, %d in S; want the move split in both", outs, ins)
			}
			again, err := sh.share("share-1", "bob@example.com")
			if err != nil || !again.Replayed || !reflect.DeepEqual(again.MovedOut, res.MovedOut) || !reflect.DeepEqual(again.MovedIn, res.MovedIn) ||
				again.MovedOutID != res.MovedOutID || again.MovedInID != res.MovedInID {
				t.Fatalf("retried share: %+v, %v", again, err)
			}
			testenv.Eventually(t, 10*time.Second, func() error { return checkSplitReads(ctx, sh, S, res.MovedOut.ItemIDs, usedBefore) })
			if e == nil {
				return
			}
			pinReads(t, e, memmodel.New(store), []uuid.UUID{sh.home, S},
				map[uuid.UUID]string{sh.alice: "alice@example.com", sh.bob: "bob@example.com"})
			checkRebuildAgrees(t, e, store)
		})
	}
}

// countParts checks ws's stream's chain and returns how many share events it holds.
func countParts(t *testing.T, store eventstore.Store, ws uuid.UUID) int {
	t.Helper()
	n := 0
	for _, ev := range readChain(t, store, domain.WorkspaceStream(ws)) {
		switch ev.(type) {
		case domain.ItemsMovedOut, domain.ItemsMovedIn:
			n++
		}
	}
	return n
}

// checkSplitReads checks what TestShareSplitReads says of the reads, once.
func checkSplitReads(ctx context.Context, sh *sharer, S uuid.UUID, moved []domain.ItemID, usedBefore int64) error {
	w, err := sh.s.Changes(ctx, sh.alice, sh.home)
	if err != nil || !reflect.DeepEqual(itemIDs(w), []domain.ItemID{*sh.docs.ID, *sh.c.ID}) {
		return fmt.Errorf("getChanges of W: %v %v", itemIDs(w), err)
	}
	s, err := sh.s.Changes(ctx, sh.bob, S)
	if err != nil {
		return err
	}
	got := itemIDs(s)
	slices.Sort(got)
	want := slices.Sorted(slices.Values(moved))
	if !slices.Equal(got, want) {
		return fmt.Errorf("getChanges of S: %d items, want %d", len(got), len(want))
	}
	for _, md := range s {
		if *md.ID == *sh.a.ID && (md.Version != 2 || md.ParentID != nil) {
			return fmt.Errorf("a.txt in S: %+v", md)
		}
	}
	page, err := sh.s.ChangesSince(ctx, sh.alice, sh.home, 0, 10000)
	if err != nil || page.WorkspaceVersion != 4 || len(page.MovedOut) != len(moved) || len(page.Items) != 2 {
		return fmt.Errorf("getChangesSince of W from 0: version %d, %d moved out, %d items, %v", page.WorkspaceVersion, len(page.MovedOut), len(page.Items), err)
	}
	sp, err := sh.s.ChangesSince(ctx, sh.bob, S, 0, 10000)
	if err != nil || sp.WorkspaceVersion != 1 || sp.ToVersion != 1 || len(sp.Items) != len(moved) {
		return fmt.Errorf("getChangesSince of S from 0: version %d, %d items, %v", sp.WorkspaceVersion, len(sp.Items), err)
	}
	wss, err := sh.s.Workspaces(ctx, sh.alice)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(wss, func(w protocol.WorkspaceInfo) bool { return w.ID == S }); i < 0 || wss[i].LatestRevision != 1 ||
		!reflect.DeepEqual(wss[i].ParentItemID, sh.docs.ID) {
		return fmt.Errorf("alice's workspaces: %+v", wss)
	}
	acc, err := sh.s.AccountInfo(ctx, &sh.alice, "alice@example.com")
	if err != nil || acc.QuotaUsed != usedBefore {
		return fmt.Errorf("alice's quotaUsed after the share: %d (%v), before %d", acc.QuotaUsed, err, usedBefore)
	}
	return nil
}
