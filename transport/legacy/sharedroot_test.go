package legacy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

func itemID(v domain.ItemID) *domain.ItemID { return &v }

// getChanges of a shared workspace renders F first, at level 1 with parent null, F's
// children under it at level 2 and deeper items below; the service's list is unchanged.
func TestRootChanges(t *testing.T) {
	ws := uuid.New()
	at := time.UnixMilli(1796000000123).UTC()
	info := shareinfo.Info{Shared: true, Folder: folderID, At: at}
	f := domain.ItemMetadata{ID: itemID(folderID), ParentID: itemID(7), ParentVersion: ptr(int64(3)), Version: 4,
		Status: domain.StatusRenamed, Filename: "old", IsFolder: true, Mimetype: "inode/directory", WorkspaceID: uuid.New(), ModifiedAt: at}
	items := []domain.ItemMetadata{
		{ID: itemID(fileID), ParentVersion: ptr(int64(4)), Version: 1, Status: domain.StatusNew, Filename: "a", WorkspaceID: ws},
		{ID: itemID(fileID + 1), ParentID: itemID(fileID), Version: 1, Status: domain.StatusNew, Filename: "b", WorkspaceID: ws},
	}
	for _, tc := range []struct {
		name    string
		f       *domain.ItemMetadata
		version int64
		status  string
	}{{"F read in W", &f, 4, "RENAMED"}, {"F unreadable", nil, 1, "NEW"}} {
		list, _, _ := js.AsList(Changes(rootChanges(rootItem(ws, info.Folder, info.At, "shared", tc.f), items)))
		if len(list) != 3 {
			t.Fatalf("%s: %d items", tc.name, len(list))
		}
		root := list[0].(*js.Object)
		name, _, _ := js.AsString(root.Get("filename"))
		status, _, _ := js.AsString(root.Get("status"))
		rws, _, _ := js.AsUUID(root.Get("workspaceId"))
		if id, _, _ := js.AsLong(root.Get("id")); id != int64(folderID) || root.Get("parentId") != nil ||
			root.Get("parentVersion") != nil || name != "shared" || rws != ws || status != tc.status {
			t.Fatalf("%s: root %s", tc.name, js.Dump(root))
		}
		if v, _, _ := js.AsLong(root.Get("version")); v != tc.version || !isFolderObj(root) {
			t.Fatalf("%s: root version %d, want %d", tc.name, v, tc.version)
		}
		for i, want := range []struct{ parent, level int64 }{{0, 1}, {int64(folderID), 2}, {int64(fileID), 3}} {
			o := list[i].(*js.Object)
			p, _, _ := js.AsLong(o.Get("parentId"))
			l, _, _ := js.AsInteger(o.Get("level"))
			if p != want.parent || int64(l) != want.level {
				t.Fatalf("%s: item %d: parent %d level %d, want %+v", tc.name, i, p, l, want)
			}
		}
		if list[1].(*js.Object).Get("parentVersion") != nil {
			t.Fatalf("%s: a child of the root keeps a parentVersion: %s", tc.name, js.Dump(list[1]))
		}
	}
	if items[0].ParentID != nil || f.ParentID == nil || *f.ParentID != 7 {
		t.Fatal("the service's items were changed")
	}
}

// A desktop's commit to S: a parentId F becomes null unless F is a tempId of the same
// commit; an item F itself refuses the request.
func TestUnrootCommit(t *testing.T) {
	r := protocol.CommitRequest{WorkspaceID: uuid.New(), Items: []domain.ItemMetadata{
		{TempID: ptr(int64(1)), ParentID: itemID(folderID), ParentVersion: ptr(int64(2))},
		{ID: itemID(fileID), ParentID: itemID(500)},
		{TempID: ptr(int64(2))},
	}}
	if err := unrootCommit(&r, folderID); err != nil {
		t.Fatal(err)
	}
	if r.Items[0].ParentID != nil || r.Items[0].ParentVersion != nil || *r.Items[1].ParentID != 500 || r.Items[2].ParentID != nil {
		t.Fatalf("unrooted: %+v", r.Items)
	}
	clash := protocol.CommitRequest{Items: []domain.ItemMetadata{{TempID: ptr(int64(folderID))}, {TempID: ptr(int64(9)), ParentID: itemID(folderID)}}}
	if err := unrootCommit(&clash, folderID); err != nil || clash.Items[1].ParentID == nil {
		t.Fatalf("a tempId equal to F: %v, %+v", err, clash.Items[1])
	}
	root := protocol.CommitRequest{Items: []domain.ItemMetadata{{TempID: ptr(int64(1))}, {ID: itemID(folderID), Version: 2}}}
	if err := unrootCommit(&root, folderID); !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("a commit of F itself: %v", err)
	}
}

// notifyCommit of S: a null parent in a CommitInfo's metadata becomes F; the event
// itself is not changed.
func TestRootCommitted(t *testing.T) {
	c := domain.Committed{RequestID: "r", Items: []domain.ItemOutcome{
		{Succeeded: true, CommittedVersion: 1, Metadata: &domain.ItemMetadata{ID: itemID(fileID), Version: 1, Status: domain.StatusNew}},
		{Succeeded: true, CommittedVersion: 1, Metadata: &domain.ItemMetadata{ID: itemID(fileID + 1), ParentID: itemID(fileID), Version: 1, Status: domain.StatusNew}},
		{Succeeded: false, CommittedVersion: 3},
	}}
	n := CommitNotification(rootCommitted(c, folderID))
	list, _, _ := js.AsList(n.Get("items"))
	for i, want := range []int64{int64(folderID), int64(fileID)} {
		md := list[i].(*js.Object).Get("metadata").(*js.Object)
		if p, _, _ := js.AsLong(md.Get("parentId")); p != want {
			t.Fatalf("item %d: %s", i, js.Dump(md))
		}
	}
	if list[2].(*js.Object).Get("metadata") != nil || c.Items[0].Metadata.ParentID != nil {
		t.Fatal("rootCommitted changed its input or invented metadata")
	}
}

// streamReader serves workspace streams from a map.
type streamReader map[string][]eventstore.RecordedEvent

func (s streamReader) ReadStream(_ context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	evs := s[stream]
	if int(from) > len(evs) {
		return nil, nil
	}
	return evs[from-1 : min(len(evs), int(from-1)+limit)], nil
}

func recorded(t *testing.T, e domain.Event) eventstore.RecordedEvent {
	t.Helper()
	typ, data, err := domain.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.RecordedEvent{Type: typ, Data: data}
}

// The server caches what a share says of a workspace only once the workspace exists:
// an id read before its share (ids of shared workspaces are derived from requestIds)
// is read again.
func TestShareCacheWaitsForTheWorkspace(t *testing.T) {
	ws, owner := uuid.New(), uuid.New()
	store := streamReader{}
	c := &shareCache{store: store, infos: map[uuid.UUID]shareinfo.Info{}}
	if info, err := c.get(context.Background(), ws); err != nil || info.Exists || info.Shared {
		t.Fatalf("before the share: %+v, %v", info, err)
	}
	store[domain.WorkspaceStream(ws)] = []eventstore.RecordedEvent{
		recorded(t, domain.WorkspaceCreated{WorkspaceID: ws, Name: "photos", OwnerID: owner, IsShared: true}),
		recorded(t, domain.ItemsMovedIn{WorkspaceID: ws, FromWorkspaceID: uuid.New(), FolderID: folderID, UserID: owner}),
	}
	info, err := c.get(context.Background(), ws)
	if err != nil || !info.Shared || info.Folder != folderID {
		t.Fatalf("after the share: %+v, %v", info, err)
	}
	delete(store, domain.WorkspaceStream(ws))
	if info, err := c.get(context.Background(), ws); err != nil || !info.Shared {
		t.Fatalf("cached: %+v, %v", info, err)
	}
}

func isFolderObj(o *js.Object) bool { b, _, _ := js.AsBoolean(o.Get("isFolder")); return b }

// Which workspaces have a root on the legacy wire: one a share created (F), a shared one
// no share created (a negative id, the same at every read, another for another
// workspace), not a personal one.
func TestRootOf(t *testing.T) {
	ws, other := uuid.New(), uuid.New()
	if r, ok := rootOf(ws, shareinfo.Info{Exists: true, IsShared: true, Shared: true, Folder: folderID}); !ok || r != folderID {
		t.Fatalf("a share's workspace: %d, %v", r, ok)
	}
	r, ok := rootOf(ws, shareinfo.Info{Exists: true, IsShared: true})
	if !ok || r >= 0 || r != syntheticRoot(ws) || r == syntheticRoot(other) {
		t.Fatalf("an operator's shared workspace: %d, %v", r, ok)
	}
	if _, ok := rootOf(ws, shareinfo.Info{Exists: true}); ok {
		t.Fatal("a personal workspace has a root")
	}
	if r := syntheticRoot(uuid.UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); r >= 0 {
		t.Fatalf("syntheticRoot of all ones: %d", r)
	}
	if r := syntheticRoot(uuid.UUID{}); r != -1 {
		t.Fatalf("syntheticRoot of zeros: %d", r)
	}
}
