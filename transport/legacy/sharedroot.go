package legacy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
)

// A shared workspace as StackSync showed it (docs/legacy.md). StackSync moved the shared
// folder F itself into the shared workspace S, so getChanges(S) listed F first and F's
// children with parentId F; the unmodified desktop takes item 0 of a shared workspace's
// getChanges as S's root folder (Profile.getAndQueueSharedChanges: changes.remove(0),
// WorkspaceController.createNewWorkspace: a local root item with F's id, version, status
// and checksum, never committed) and places the rest under it by parentId. Here F stays in
// the owner's W as the mount point and S holds F's children at its root with parentId
// null (PROTOCOL.md §8 rule 2). For a workspace a share created, the legacy wire alone
// shows StackSync's view (the JSON protocol is unchanged):
//
//   - getChanges(S): a root item for F first, then S's items with parentId null mapped
//     to F;
//   - notifyCommit of S: a parentId null in a CommitInfo's metadata mapped to F;
//   - commit to S: a parentId F mapped back to null; an item F itself is refused (the
//     desktop never commits its workspace root: it renames it with updateWorkspace).
//
// A shared workspace no share created (syncctl workspace create) has no F; the desktop
// drops its item 0 all the same. It gets a root of its own: a folder whose id is
// syntheticRoot(S), a negative Long no item ever has (the service hands out positive
// ids), with the same mappings. A personal workspace is served as the service lists it.

// rootOf returns the id of ws's root on the legacy wire, if ws has one.
func rootOf(ws uuid.UUID, info shareinfo.Info) (domain.ItemID, bool) {
	switch {
	case info.Shared:
		return info.Folder, true
	case info.IsShared:
		return syntheticRoot(ws), true
	}
	return 0, false
}

// syntheticRoot is the root id of a shared workspace no share created: negative, and
// the same for every read of ws.
func syntheticRoot(ws uuid.UUID) domain.ItemID {
	return domain.ItemID(-int64(binary.BigEndian.Uint64(ws[:8])>>1) - 1)
}

// rootChanges returns items as StackSync listed S: root first, then items with a null
// parent placed under it (the others keep theirs). items are not changed.
func rootChanges(root domain.ItemMetadata, items []domain.ItemMetadata) []domain.ItemMetadata {
	out := make([]domain.ItemMetadata, 0, len(items)+1)
	out = append(out, root)
	for _, m := range items {
		out = append(out, underRoot(m, *root.ID))
	}
	return out
}

// underRoot returns m with a null parent set to folder.
func underRoot(m domain.ItemMetadata, folder domain.ItemID) domain.ItemMetadata {
	if m.ParentID == nil {
		m.ParentID = &folder
		m.ParentVersion = nil
	}
	return m
}

// rootItem is F's row in StackSync's S: the root's id, and F's version, status, device,
// time and mimetype as the service holds F in W (f; nil if F cannot be read there, or
// there is no F: then version 1, NEW, at the share's or the workspace's creation), the
// user's name for S as filename (the desktop names the folder after the workspace), a
// folder at S's root (parent null, level 1, checksum and size 0).
func rootItem(ws uuid.UUID, id domain.ItemID, at time.Time, name string, f *domain.ItemMetadata) domain.ItemMetadata {
	root := domain.ItemMetadata{Version: 1, Status: domain.StatusNew, ModifiedAt: at, Mimetype: folderMimetype}
	if f != nil {
		root = *f
	}
	root.ID, root.ParentID, root.ParentVersion, root.TempID = &id, nil, nil, nil
	root.WorkspaceID, root.Filename, root.IsFolder = ws, name, true
	root.Checksum, root.Size, root.Chunks = 0, 0, nil
	return root
}

// folderMimetype is the desktop's mimetype of a folder.
const folderMimetype = "inode/directory"

// unrootCommit maps a desktop's commit to S back to the service's S: a parentId F (not
// a tempId of an item of the same commit, which the service resolves first) becomes
// null. An item F itself is refused (InvalidRequest): F is not an item of S.
func unrootCommit(r *protocol.CommitRequest, folder domain.ItemID) error {
	temps := make(map[int64]bool, len(r.Items))
	for _, m := range r.Items {
		if m.TempID != nil {
			temps[*m.TempID] = true
		}
	}
	for i := range r.Items {
		m := &r.Items[i]
		if m.ID != nil && *m.ID == folder {
			return invalid("commit.items[%d]: item %d is the root of shared workspace %s, not an item of it (rename it with updateWorkspace)",
				i, folder, r.WorkspaceID)
		}
		if m.ParentID != nil && *m.ParentID == folder && !temps[int64(folder)] {
			m.ParentID, m.ParentVersion = nil, nil
		}
	}
	return nil
}

// rootCommitted returns c with every metadata's null parent set to folder (c is not
// changed).
func rootCommitted(c domain.Committed, folder domain.ItemID) domain.Committed {
	items := make([]domain.ItemOutcome, len(c.Items))
	for i, o := range c.Items {
		if o.Metadata != nil {
			m := underRoot(*o.Metadata, folder)
			o.Metadata = &m
		}
		items[i] = o
	}
	c.Items = items
	return c
}

// shareCache holds what a share says of each workspace read so far, for the server
// (its handlers run concurrently). Only workspaces that exist are cached: their Info
// never changes.
type shareCache struct {
	store shareinfo.Reader
	mu    sync.Mutex
	infos map[uuid.UUID]shareinfo.Info
}

func (c *shareCache) get(ctx context.Context, ws uuid.UUID) (shareinfo.Info, error) {
	c.mu.Lock()
	info, ok := c.infos[ws]
	c.mu.Unlock()
	if ok {
		return info, nil
	}
	info, err := shareinfo.Read(ctx, c.store, ws)
	if err != nil {
		return shareinfo.Info{}, fmt.Errorf("legacy: %w", err)
	}
	if info.Exists {
		c.mu.Lock()
		if len(c.infos) >= maxShareInfos {
			clear(c.infos)
		}
		c.infos[ws] = info
		c.mu.Unlock()
	}
	return info, nil
}

// rootOfWorkspace returns ws's share info and the id of its root on the legacy wire, if
// it has one.
func (s *Server) rootOfWorkspace(ctx context.Context, ws uuid.UUID) (shareinfo.Info, domain.ItemID, bool, error) {
	if s.shares == nil {
		return shareinfo.Info{}, 0, false, nil
	}
	info, err := s.shares.get(ctx, ws)
	if err != nil {
		return shareinfo.Info{}, 0, false, err
	}
	root, ok := rootOf(ws, info)
	return info, root, ok, nil
}

// changes answers getChanges: the service's list, under a root for a shared workspace.
// The service authorizes the user first.
func (s *Server) changes(ctx context.Context, user, ws uuid.UUID) ([]domain.ItemMetadata, error) {
	items, err := s.svc.Changes(ctx, user, ws)
	if err != nil {
		return nil, err
	}
	info, root, ok, err := s.rootOfWorkspace(ctx, ws)
	if err != nil || !ok {
		return items, err
	}
	name, at := info.Name, info.Created
	wss, err := s.svc.Workspaces(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, w := range wss {
		if w.ID == ws {
			name = w.Name
		}
	}
	var f *domain.ItemMetadata
	if info.Shared {
		// F's history in W, read as its owner (the user may not be a member of W).
		at = info.At
		vs, err := s.svc.ItemVersions(ctx, info.Owner, info.From, info.Folder)
		switch {
		case err == nil && len(vs) > 0:
			f = &vs[len(vs)-1]
		case errors.Is(err, protocol.ErrUnauthorized) || errors.Is(err, protocol.ErrWorkspaceNotFound):
			s.log.Warn("legacy: the shared folder cannot be read; its root is shown as at the share", "workspace", ws,
				"folder", info.Folder, "err", err)
		case err != nil:
			return nil, err
		}
	}
	return rootChanges(rootItem(ws, root, at, name, f), items), nil
}

// unroot maps a commit to a shared workspace back to the service's view.
func (s *Server) unroot(ctx context.Context, r *protocol.CommitRequest) error {
	_, root, ok, err := s.rootOfWorkspace(ctx, r.WorkspaceID)
	if err != nil || !ok {
		return err
	}
	return unrootCommit(r, root)
}
