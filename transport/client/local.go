package client

import (
	"sync"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// Local is a device's view of its items across workspaces, kept by item id (ids are
// unique across workspaces, PROTOCOL.md §3), built from the updates the event
// consumer delivers: a program passes each Update to Apply. It re-homes items on a
// share (§8 rule 5): a movedOut (a notifyCommit's or a catch-up page's) moves the
// named items, with whatever the device holds of them, to the shared workspace by id,
// so nothing looks deleted; a moved item whose parent did not move (F's children) sits
// at the new workspace's root. The movedIn notification or S's catch-up then brings
// the server's metadata of the same ids. Safe for concurrent use.
type Local struct {
	mu    sync.Mutex
	items map[domain.ItemID]domain.ItemMetadata
}

// NewLocal returns an empty local view.
func NewLocal() *Local { return &Local{items: map[domain.ItemID]domain.ItemMetadata{}} }

// Apply folds one update in.
func (l *Local) Apply(u Update) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := u.Commit; n != nil {
		if n.MovedOut != nil {
			to, err := uuid.Parse(n.MovedOut.WorkspaceID)
			if err != nil {
				return
			}
			ids := make([]domain.ItemID, len(n.MovedOut.ItemIDs))
			for i, id := range n.MovedOut.ItemIDs {
				ids[i] = domain.ItemID(id)
			}
			l.rehome(ids, to)
			return
		}
		for i, it := range n.Items {
			if !it.CommitSucceed || it.Metadata == nil {
				continue
			}
			if m, err := it.Metadata.ToItem(i); err == nil && m.ID != nil {
				l.items[*m.ID] = m
			}
		}
		return
	}
	for _, m := range u.Items {
		if m.ID != nil {
			l.items[*m.ID] = m
		}
	}
	byTarget := map[uuid.UUID][]domain.ItemID{}
	for _, m := range u.MovedOut {
		byTarget[m.WorkspaceID] = append(byTarget[m.WorkspaceID], m.ID)
	}
	for to, ids := range byTarget {
		l.rehome(ids, to)
	}
}

// rehome moves the known items of ids to workspace to; those whose parent stays
// behind go to its root.
func (l *Local) rehome(ids []domain.ItemID, to uuid.UUID) {
	moving := map[domain.ItemID]bool{}
	for _, id := range ids {
		moving[id] = true
	}
	for _, id := range ids {
		m, ok := l.items[id]
		if !ok {
			continue // the movedIn (or S's catch-up) brings it
		}
		m.WorkspaceID = to
		if m.ParentID != nil && !moving[*m.ParentID] {
			m.ParentID, m.ParentVersion = nil, nil
		}
		l.items[id] = m
	}
}

// Item returns what the device holds of item id.
func (l *Local) Item(id domain.ItemID) (domain.ItemMetadata, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.items[id]
	return m, ok
}

// Workspace returns the items the device holds in ws (in no particular order).
func (l *Local) Workspace(ws uuid.UUID) []domain.ItemMetadata {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []domain.ItemMetadata
	for _, m := range l.items {
		if m.WorkspaceID == ws {
			out = append(out, m)
		}
	}
	return out
}
