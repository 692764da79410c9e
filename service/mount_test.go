package service_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

// A member's mount point (updateWorkspace's parentItemId) may not nest shared
// workspaces (PROTOCOL.md §8): an item of the workspace itself, an item of another
// shared workspace of the caller, or the mount point of another of the caller's
// workspaces is InvalidRequest, and changes nothing; a folder of the caller's personal
// workspace is accepted, and then that folder may not be shared. Checked on every read
// model.
func TestMountPointNotNested(t *testing.T) {
	for _, setup := range shareReadSetups {
		t.Run(setup.name, func(t *testing.T) {
			_, store, reads := setup.open(t)
			sh := newSharer(t, &shareEnv{t: t, store: store, reads: reads, ids: &ctxIDs{}})
			ctx := context.Background()
			// alice shares docs (S1) and other/ (S2, holding x.txt) with bob.
			res := sh.commit(t, sh.home, "other", folder(-20, "other"), file(-21, "x.txt", ptr(domain.ItemID(-20)), 5))
			other, x := *res.Event.Items[0].Metadata.ID, *res.Event.Items[1].Metadata.ID
			r1, err := sh.share("share-1", "bob@example.com")
			if err != nil {
				t.Fatal(err)
			}
			r2, err := sh.s.Share(ctx, shareRequest("share-2", sh.alice, other, "bob@example.com"))
			if err != nil {
				t.Fatal(err)
			}
			S1, S2 := r1.WorkspaceID, r2.WorkspaceID
			// bob's own folder mnt in his personal workspace.
			bobDev, err := sh.s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg-bob", UserID: sh.bob, Name: "pc", OS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			var bobHome uuid.UUID
			testenv.Eventually(t, 10*time.Second, func() error {
				wss, err := sh.s.Workspaces(ctx, sh.bob)
				if err != nil || len(wss) != 3 {
					return fmt.Errorf("bob's workspaces: %+v %v", wss, err)
				}
				bobHome = wss[0].ID
				return nil
			})
			cr, err := sh.s.Commit(ctx, protocol.CommitRequest{RequestID: "mnt", UserID: sh.bob, WorkspaceID: bobHome, DeviceID: bobDev.ID,
				Items: []domain.ItemMetadata{folder(-1, "mnt")}})
			if err != nil || !cr.Event.Items[0].Succeeded {
				t.Fatalf("bob's folder: %+v %v", cr, err)
			}
			mnt := *cr.Event.Items[0].Metadata.ID
			update := func(user, ws uuid.UUID, req string, parent domain.ItemID) error {
				return sh.s.UpdateWorkspace(ctx, protocol.UpdateWorkspaceRequest{RequestID: req, UserID: user, WorkspaceID: ws, Name: "n", ParentItemID: &parent})
			}
			// Reads see what was notified: wait until the read model knows S2's items and mnt.
			testenv.Eventually(t, 10*time.Second, func() error {
				vs, err := sh.s.ItemVersions(ctx, sh.bob, S2, x)
				if err == nil && len(vs) == 0 {
					err = errors.New("x.txt not in S2 yet")
				}
				return err
			})
			if err := update(sh.bob, S1, "u1", mnt); err != nil {
				t.Fatalf("bob mounts S1 at his folder mnt: %v", err)
			}
			mountOf := func(user, ws uuid.UUID) (*domain.ItemID, error) {
				wss, err := sh.s.Workspaces(ctx, user)
				i := slices.IndexFunc(wss, func(w protocol.WorkspaceInfo) bool { return w.ID == ws })
				if err != nil || i < 0 {
					return nil, fmt.Errorf("workspaces of %s: %+v %v", user, wss, err)
				}
				return wss[i].ParentItemID, nil
			}
			testenv.Eventually(t, 10*time.Second, func() error {
				if p, err := mountOf(sh.bob, S1); err != nil || p == nil || *p != mnt {
					return fmt.Errorf("bob's mount point of S1: %v %v", p, err)
				}
				return nil
			})
			// Nor may bob share mnt now: S1 would be nested in the new workspace.
			if _, err := sh.s.Share(ctx, shareRequest("bob-share", sh.bob, mnt, "alice@example.com")); !errors.Is(err, protocol.ErrInvalid) {
				t.Errorf("bob shares his folder where S1 is mounted: %v, want InvalidRequest", err)
			}
			for _, tc := range []struct {
				name      string
				user, ws  uuid.UUID
				parent    domain.ItemID
				wantMount *domain.ItemID // unchanged
			}{
				{"an item of the workspace itself", sh.bob, S2, x, nil},
				{"a folder of the workspace itself", sh.bob, S1, *sh.sub.ID, &mnt},
				{"an item of another shared workspace", sh.bob, S1, x, &mnt},
				{"the mount point of another workspace", sh.bob, S2, mnt, nil},
				{"the owner's mount point of another workspace", sh.alice, S1, other, sh.docs.ID},
			} {
				if err := update(tc.user, tc.ws, "bad-"+tc.name, tc.parent); !errors.Is(err, protocol.ErrInvalid) {
					t.Errorf("%s: %v, want InvalidRequest", tc.name, err)
				}
				if p, err := mountOf(tc.user, tc.ws); err != nil || !reflect.DeepEqual(p, tc.wantMount) {
					t.Errorf("%s: mount point now %v (%v), want %v", tc.name, p, err, tc.wantMount)
				}
			}
		})
	}
}

func shareRequest(req string, user uuid.UUID, item domain.ItemID, emails ...string) service.ShareRequest {
	return service.ShareRequest{RequestID: req, UserID: user, ItemID: item, Emails: emails}
}
