// Package memmodel is an in-memory read model for unit tests: it answers every query the
// service asks of its read models (service.ReadModel) from the events of any event
// store, memstore in tests, folded with the domain's own aggregates. It catches up with
// the store's global order before every query, so a read sees every event appended
// before it. It keeps everything in memory and never forgets: it must never serve a
// server process (projections.Queries does, over PostgreSQL).
package memmodel

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Paging of ChangesSince, as projections.Queries pages (PROTOCOL.md §4).
const (
	defaultChangesLimit = 1000
	maxChangesLimit     = 10000
)

// Model is the in-memory read model over one store. It is safe for concurrent use.
type Model struct {
	store eventstore.Store

	mu         sync.Mutex
	pos        eventstore.Position // the last event folded
	workspaces map[uuid.UUID]*workspace
	users      map[uuid.UUID]*domain.User
	// homes: item → the workspace holding it (as the PostgreSQL model's items_item_idx).
	homes map[domain.ItemID]uuid.UUID
}

// workspace is one workspace's state and, for each stored item version, the workspace
// version that stored it.
type workspace struct {
	state    *domain.Workspace
	storedAt map[domain.ItemID][]int64 // item → workspace version of each of its versions
	changed  map[int64][]domain.ItemID // workspace version → items it stored
	// movedOut: workspace version → the items a share moved out at that version.
	movedOut map[int64][]protocol.MovedOutItem
}

// New returns a read model of store's events.
func New(store eventstore.Store) *Model {
	return &Model{store: store, workspaces: map[uuid.UUID]*workspace{}, users: map[uuid.UUID]*domain.User{},
		homes: map[domain.ItemID]uuid.UUID{}}
}

// catchUp folds the events appended since the last query; the caller holds m.mu.
func (m *Model) catchUp(ctx context.Context) error {
	for {
		recs, err := m.store.ReadAll(ctx, m.pos, 1000)
		if err != nil {
			return fmt.Errorf("memmodel: read all after %v: %w", m.pos, err)
		}
		if len(recs) == 0 {
			return nil
		}
		for i := range recs {
			m.fold(&recs[i])
			m.pos = recs[i].Position
		}
	}
}

// fold applies one event; events it cannot decode change nothing (like Evolve).
func (m *Model) fold(r *eventstore.RecordedEvent) {
	ev, err := domain.Decode(r.Type, r.Data)
	if err != nil {
		return
	}
	switch {
	case strings.HasPrefix(r.Stream, "workspace-"):
		id, err := uuid.Parse(strings.TrimPrefix(r.Stream, "workspace-"))
		if err != nil {
			return
		}
		w := m.workspaces[id]
		if w == nil {
			w = &workspace{state: domain.NewWorkspace(id), storedAt: map[domain.ItemID][]int64{}, changed: map[int64][]domain.ItemID{},
				movedOut: map[int64][]protocol.MovedOutItem{}}
			m.workspaces[id] = w
		}
		before := w.state.Version()
		w.state.Evolve(ev)
		switch e := ev.(type) {
		case domain.Committed:
			w.record(e)
		case domain.ItemsMovedIn:
			w.recordMovedIn(e)
		case domain.ItemsMovedOut:
			// A continuing part repeats the first part's version.
			if w.state.Version() > before || (e.Part > 0 && w.state.Version() == e.WorkspaceVersion) {
				w.recordMovedOut(e)
			}
		}
		m.rehome(id, w, ev)
	case strings.HasPrefix(r.Stream, "user-"):
		id, err := uuid.Parse(strings.TrimPrefix(r.Stream, "user-"))
		if err != nil {
			return
		}
		u := m.users[id]
		if u == nil {
			u = domain.NewUser(id)
			m.users[id] = u
		}
		u.Evolve(ev)
	}
}

// rehome keeps homes right after ev was folded into w (workspace id): items it stored
// are w's, items it moved out are no longer.
func (m *Model) rehome(id uuid.UUID, w *workspace, ev domain.Event) {
	var ids []domain.ItemID
	switch e := ev.(type) {
	case domain.Committed:
		for _, o := range e.Items {
			if o.Metadata != nil && o.Metadata.ID != nil {
				ids = append(ids, *o.Metadata.ID)
			}
		}
	case domain.ItemsMovedIn:
		for _, it := range e.Items {
			ids = append(ids, it.ID)
		}
	case domain.ItemsMovedOut:
		for _, it := range e.ItemIDs {
			if _, held := w.state.Item(it); !held && m.homes[it] == id {
				delete(m.homes, it)
			}
		}
	}
	for _, it := range ids {
		if _, held := w.state.Item(it); held {
			m.homes[it] = id
		}
	}
}

// record notes the item versions the aggregate stored from c, at its workspace version.
func (w *workspace) record(c domain.Committed) {
	v := w.state.Version()
	for _, o := range c.Items {
		if o.Metadata == nil || o.Metadata.ID == nil {
			continue
		}
		id := *o.Metadata.ID
		if n := len(w.state.ItemVersions(id)); n > len(w.storedAt[id]) {
			w.storedAt[id] = append(w.storedAt[id], v)
			w.changed[v] = append(w.changed[v], id)
		}
	}
}

// recordMovedIn notes the versions of the items that moved in, all stored at the
// move-in's workspace version (as the PostgreSQL model stores them); an item continued
// from an earlier part of the move gets its further versions at the same version.
func (w *workspace) recordMovedIn(e domain.ItemsMovedIn) {
	v := w.state.Version()
	for _, it := range e.Items {
		n := len(w.state.ItemVersions(it.ID))
		had := len(w.storedAt[it.ID])
		if n <= had {
			continue
		}
		for range n - had {
			w.storedAt[it.ID] = append(w.storedAt[it.ID], v)
		}
		if had == 0 {
			w.changed[v] = append(w.changed[v], it.ID)
		}
	}
}

// recordMovedOut forgets the versions of the items that moved out (they are the shared
// workspace's now) and notes them as moved out at the move's workspace version.
func (w *workspace) recordMovedOut(e domain.ItemsMovedOut) {
	v := w.state.Version()
	gone := map[domain.ItemID]bool{}
	for _, id := range e.ItemIDs {
		if _, known := w.storedAt[id]; !known || gone[id] {
			continue
		}
		gone[id] = true
		delete(w.storedAt, id)
		w.movedOut[v] = append(w.movedOut[v], protocol.MovedOutItem{ID: id, WorkspaceID: e.ToWorkspaceID})
	}
	for cv, ids := range w.changed {
		w.changed[cv] = slices.DeleteFunc(ids, func(id domain.ItemID) bool { return gone[id] })
	}
}

// existing returns the workspace ws, caught up, or an error if it does not exist.
func (m *Model) existing(ctx context.Context, ws uuid.UUID) (*workspace, error) {
	if err := m.catchUp(ctx); err != nil {
		return nil, err
	}
	w := m.workspaces[ws]
	if w == nil || !w.state.Exists() {
		return nil, fmt.Errorf("memmodel: workspace %s not found", ws)
	}
	return w, nil
}

// Changes returns the latest version of every item, parents first, and the version.
func (m *Model) Changes(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.existing(ctx, ws)
	if err != nil {
		return nil, 0, err
	}
	return w.state.Items(), w.state.Version(), nil
}

// ChangesSince returns the page of changes after version since: whole versions, at most
// limit items unless the first version alone has more, each item in its state as of the
// page's last version, parents before children.
func (m *Model) ChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if since < 0 {
		return protocol.ChangesPage{}, fmt.Errorf("memmodel: changes of %s since %d: negative version", ws, since)
	}
	w, err := m.existing(ctx, ws)
	if err != nil {
		return protocol.ChangesPage{}, err
	}
	if limit <= 0 {
		limit = defaultChangesLimit
	}
	limit = min(limit, maxChangesLimit)
	cur := w.state.Version()
	page := protocol.ChangesPage{FromVersion: since, ToVersion: max(since, cur), WorkspaceVersion: cur, Items: []domain.ItemMetadata{}}
	if since >= cur {
		page.ToVersion = cur
		return page, nil
	}
	ids := map[domain.ItemID]bool{}
	to := since
	var moved []protocol.MovedOutItem
	for v := since + 1; v <= cur; v++ {
		n := len(ids) + len(moved) + len(w.movedOut[v]) // a moved-out item counts as an item
		for _, id := range w.changed[v] {
			if !ids[id] {
				n++
			}
		}
		// A version that stored nothing here has no rows to walk: like the PostgreSQL
		// model's walk, it never ends a page.
		if to > since && n > limit && (len(w.changed[v]) > 0 || len(w.movedOut[v]) > 0) {
			break
		}
		for _, id := range w.changed[v] {
			ids[id] = true
		}
		moved = append(moved, w.movedOut[v]...)
		to = v
	}
	if len(moved) > 0 {
		slices.SortFunc(moved, func(a, b protocol.MovedOutItem) int { return cmp.Compare(a.ID, b.ID) })
		page.MovedOut = moved
	}
	page.ToVersion, page.HasMore = to, to < cur
	var items []domain.ItemMetadata
	for id := range ids {
		vs := w.state.ItemVersions(id)
		for i := len(vs) - 1; i >= 0; i-- {
			if w.storedAt[id][i] <= to {
				items = append(items, vs[i])
				break
			}
		}
	}
	page.Items = append(page.Items, treeOrder(items)...)
	return page, nil
}

// treeOrder orders items parents first (depth first from the items whose parent is not
// among them), siblings by ascending id.
func treeOrder(items []domain.ItemMetadata) []domain.ItemMetadata {
	slices.SortFunc(items, func(a, b domain.ItemMetadata) int { return cmp.Compare(*a.ID, *b.ID) })
	in := map[domain.ItemID]bool{}
	children := map[domain.ItemID][]domain.ItemMetadata{}
	for _, it := range items {
		in[*it.ID] = true
	}
	var roots []domain.ItemMetadata
	for _, it := range items {
		if it.ParentID != nil && in[*it.ParentID] {
			children[*it.ParentID] = append(children[*it.ParentID], it)
		} else {
			roots = append(roots, it)
		}
	}
	out := make([]domain.ItemMetadata, 0, len(items))
	var walk func([]domain.ItemMetadata)
	walk = func(its []domain.ItemMetadata) {
		for _, it := range its {
			out = append(out, it)
			walk(children[*it.ID])
		}
	}
	walk(roots)
	return out
}

// ItemVersions returns every stored version of the item, oldest first.
func (m *Model) ItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.existing(ctx, ws)
	if err != nil {
		return nil, err
	}
	out := w.state.ItemVersions(item)
	if out == nil {
		out = []domain.ItemMetadata{}
	}
	return out, nil
}

// ItemWorkspace finds the workspace holding item and whether user is a member of it.
func (m *Model) ItemWorkspace(ctx context.Context, item domain.ItemID, user uuid.UUID) (uuid.UUID, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.catchUp(ctx); err != nil {
		return uuid.Nil, false, err
	}
	ws, ok := m.homes[item]
	if !ok {
		return uuid.Nil, false, nil
	}
	return ws, m.workspaces[ws].state.IsMember(user), nil
}

// WorkspacesOf lists the user's workspaces: the personal one (not shared, owned by the
// user) first, then by the member's name for them and by id.
func (m *Model) WorkspacesOf(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.catchUp(ctx); err != nil {
		return nil, err
	}
	var out []protocol.WorkspaceInfo
	for id, w := range m.workspaces {
		s := w.state
		if !s.Exists() || !s.IsMember(user) {
			continue
		}
		for _, mb := range s.Members() {
			if mb.UserID == user {
				out = append(out, protocol.WorkspaceInfo{ID: id, Name: mb.Name, OwnerID: s.OwnerID(), IsShared: s.IsShared(),
					IsEncrypted: s.IsEncrypted(), ParentItemID: mb.ParentItemID, LatestRevision: s.Version()})
			}
		}
	}
	personal := func(w protocol.WorkspaceInfo) bool { return w.OwnerID == user && !w.IsShared }
	slices.SortFunc(out, func(a, b protocol.WorkspaceInfo) int {
		if pa, pb := personal(a), personal(b); pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID.String(), b.ID.String()))
	})
	return out, nil
}

// Membership tells whether the workspace exists and whether user is a member.
func (m *Model) Membership(ctx context.Context, ws, user uuid.UUID) (exists, member bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.catchUp(ctx); err != nil {
		return false, false, err
	}
	w := m.workspaces[ws]
	if w == nil || !w.state.Exists() {
		return false, false, nil
	}
	return true, w.state.IsMember(user), nil
}

// AccountByEmail finds the user (not removed) with that e-mail, compared
// case-insensitively.
func (m *Model) AccountByEmail(ctx context.Context, email string) (protocol.Account, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.catchUp(ctx); err != nil {
		return protocol.Account{}, false, err
	}
	for _, u := range m.users {
		if u.Exists() && !u.Removed() && strings.EqualFold(u.Email(), email) {
			return protocol.Account{UserID: u.ID(), Name: u.Name(), Email: u.Email(), QuotaLimit: u.QuotaLimit()}, true, nil
		}
	}
	return protocol.Account{}, false, nil
}

// OwnerUsageExcept sums the used bytes of the workspaces owner owns, except one.
func (m *Model) OwnerUsageExcept(ctx context.Context, owner, except uuid.UUID) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.catchUp(ctx); err != nil {
		return 0, err
	}
	var used int64
	for id, w := range m.workspaces {
		if id != except && w.state.Exists() && w.state.OwnerID() == owner {
			used += w.state.Used()
		}
	}
	return used, nil
}

// Transient reports false: an in-memory read fails only for good.
func (m *Model) Transient(error) bool { return false }
