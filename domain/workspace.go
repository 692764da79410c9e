package domain

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/google/uuid"
)

// Member is one member of a workspace with their own name and mount point for it.
type Member struct {
	UserID       uuid.UUID
	Name         string
	ParentItemID *ItemID
}

// tempKey identifies a device's temporary id for a new item: the device by its index
// in Workspace.uuids (16 bytes a key instead of 24).
type tempKey struct {
	device uint32
	temp   int64
}

// tempItem returns the item that device's new item tempId created, if one did.
func (w *Workspace) tempItem(device uuid.UUID, temp int64) (ItemID, bool) {
	d, ok := w.uuids.index[device]
	if !ok {
		return 0, false
	}
	id, ok := w.tempIDs[tempKey{d, temp}]
	return id, ok
}

// Workspace is the state of one workspace stream, folded from its events. Build it with
// NewWorkspace and Evolve; ask it to Decide. A Workspace is not safe for concurrent
// mutation; Decide and the accessors only read it.
type Workspace struct {
	id            uuid.UUID
	exists        bool
	name          string
	owner         uuid.UUID
	shared        bool
	encrypted     bool
	version       int64  // number of Committed and ItemsMoved{Out,In} events applied
	streamVersion uint64 // number of events folded
	used          int64  // sum of live sizes

	members map[uuid.UUID]Member
	// items holds every version of every item, versions[i] being version i+1, in the
	// compact form of stored.go; uuids and labels are the tables its versions index.
	items  map[ItemID][]storedVersion
	uuids  valueTable[uuid.UUID]
	labels valueTable[string]
	zones  zoneTable
	// tempIDs maps a (device, tempId) of a stored new item to the item it created.
	tempIDs map[tempKey]ItemID
	// commits and memberUpdates map a processed requestId to the stream version of the
	// event that recorded it (separate namespaces: a replay must find its own kind).
	commits       map[string]uint64
	memberUpdates map[string]uint64
	// shares maps a folder of this workspace to the shared workspace it is the owner's
	// mount point of; shareRequests a share's requestId to the stream version of its
	// ItemsMovedOut (share.go).
	shares        map[ItemID]uuid.UUID
	shareRequests map[string]shareRecord
	// reshares maps the requestId of a share that added members to this (already
	// shared) workspace to those members, in the order of their MemberAdded events.
	reshares map[string][]Member
}

// NewWorkspace returns the empty state of the workspace id: not yet created.
func NewWorkspace(id uuid.UUID) *Workspace {
	return &Workspace{
		id:            id,
		members:       map[uuid.UUID]Member{},
		items:         map[ItemID][]storedVersion{},
		tempIDs:       map[tempKey]ItemID{},
		commits:       map[string]uint64{},
		memberUpdates: map[string]uint64{},
		shares:        map[ItemID]uuid.UUID{},
		shareRequests: map[string]shareRecord{},
		reshares:      map[string][]Member{},
	}
}

// Clone returns a deep copy of w.
func (w *Workspace) Clone() *Workspace {
	c := *w
	c.members = make(map[uuid.UUID]Member, len(w.members))
	for k, m := range w.members {
		m.ParentItemID = clonePtr(m.ParentItemID)
		c.members[k] = m
	}
	c.items = make(map[ItemID][]storedVersion, len(w.items))
	for k, vs := range w.items {
		c.items[k] = slices.Clone(vs) // a stored chunk list is never changed in place
	}
	c.tempIDs = make(map[tempKey]ItemID, len(w.tempIDs))
	for k, v := range w.tempIDs {
		c.tempIDs[k] = v
	}
	c.commits = make(map[string]uint64, len(w.commits))
	for k, v := range w.commits {
		c.commits[k] = v
	}
	c.memberUpdates = make(map[string]uint64, len(w.memberUpdates))
	for k, v := range w.memberUpdates {
		c.memberUpdates[k] = v
	}
	c.shares = maps.Clone(w.shares)
	c.shareRequests = maps.Clone(w.shareRequests)
	c.reshares = maps.Clone(w.reshares) // applyMemberAdded never appends in place
	w.cloneTables(&c)
	return &c
}

// ID is the workspace's id.
func (w *Workspace) ID() uuid.UUID { return w.id }

// Exists reports whether the workspace has been created.
func (w *Workspace) Exists() bool { return w.exists }

// Name is the workspace's name (the owner's name for it).
func (w *Workspace) Name() string { return w.name }

// OwnerID is the workspace owner, who is charged its quota.
func (w *Workspace) OwnerID() uuid.UUID { return w.owner }

// IsShared reports whether the workspace was created as a shared workspace.
func (w *Workspace) IsShared() bool { return w.shared }

// IsEncrypted reports whether the workspace is encrypted.
func (w *Workspace) IsEncrypted() bool { return w.encrypted }

// Version is the workspaceVersion: the number of Committed events applied, plus the
// ItemsMovedOut and ItemsMovedIn of shares (each takes a workspaceVersion, PROTOCOL.md §8).
func (w *Workspace) Version() int64 { return w.version }

// StreamVersion is the number of events folded into w, which is the stream version
// of its last event (the expected version of the next append).
func (w *Workspace) StreamVersion() uint64 { return w.streamVersion }

// Used is the sum of the sizes of the workspace's live (not deleted) items.
func (w *Workspace) Used() int64 { return w.used }

// IsMember reports whether user is a member (the owner is one).
func (w *Workspace) IsMember(user uuid.UUID) bool {
	_, ok := w.members[user]
	return ok
}

// Members returns the members sorted by UserID.
func (w *Workspace) Members() []Member {
	out := make([]Member, 0, len(w.members))
	for _, m := range w.members {
		m.ParentItemID = clonePtr(m.ParentItemID)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return bytes.Compare(a.UserID[:], b.UserID[:]) })
	return out
}

// Item returns the latest version of the item id, deleted or not.
func (w *Workspace) Item(id ItemID) (ItemMetadata, bool) {
	m, ok := w.latest(id)
	if !ok {
		return ItemMetadata{}, false
	}
	return m.Clone(), true
}

// ItemVersions returns every version of the item id, oldest first (nil if unknown).
func (w *Workspace) ItemVersions(id ItemID) []ItemMetadata {
	if len(w.items[id]) == 0 {
		return nil
	}
	out := w.versions(id)
	for i := range out {
		out[i] = out[i].Clone()
	}
	return out
}

// Items returns the latest version of every item, deleted items included, in the
// getChanges order: depth-first from the root, parents before children, siblings by
// ascending id. Items not reachable from the root (only possible after events Decide
// never produces) follow at the end by ascending id.
func (w *Workspace) Items() []ItemMetadata {
	children := map[ItemID][]ItemID{}
	var roots []ItemID
	for id, vs := range w.items {
		if len(vs) == 0 {
			continue
		}
		if p := vs[len(vs)-1].parent(); p != nil {
			children[*p] = append(children[*p], id)
		} else {
			roots = append(roots, id)
		}
	}
	out := make([]ItemMetadata, 0, len(w.items))
	seen := make(map[ItemID]bool, len(w.items))
	var walk func(ids []ItemID)
	walk = func(ids []ItemID) {
		slices.Sort(ids)
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			m, _ := w.latest(id)
			out = append(out, m.Clone())
			walk(children[id])
		}
	}
	walk(roots)
	if len(out) < len(w.items) {
		var rest []ItemID
		for id, vs := range w.items {
			if len(vs) > 0 && !seen[id] {
				rest = append(rest, id)
			}
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i] < rest[j] })
		for _, id := range rest {
			m, _ := w.latest(id)
			out = append(out, m.Clone())
		}
	}
	return out
}

// Evolve folds one event of the workspace's stream into w. It is deterministic and
// total: it never panics, and an event it cannot apply (unknown type, another
// workspace, a workspace not yet created, an item version out of sequence) changes
// nothing but the stream version, which counts every event folded.
func (w *Workspace) Evolve(e Event) {
	if e == nil {
		return
	}
	w.streamVersion++
	switch ev := e.(type) {
	case WorkspaceCreated:
		w.applyCreated(ev)
	case *WorkspaceCreated:
		if ev != nil {
			w.applyCreated(*ev)
		}
	case MemberAdded:
		w.applyMemberAdded(ev)
	case *MemberAdded:
		if ev != nil {
			w.applyMemberAdded(*ev)
		}
	case MemberRemoved:
		w.applyMemberRemoved(ev)
	case *MemberRemoved:
		if ev != nil {
			w.applyMemberRemoved(*ev)
		}
	case MemberWorkspaceUpdated:
		w.applyMemberUpdated(ev)
	case *MemberWorkspaceUpdated:
		if ev != nil {
			w.applyMemberUpdated(*ev)
		}
	case Committed:
		w.applyCommitted(&ev)
	case *Committed:
		if ev != nil {
			w.applyCommitted(ev)
		}
	case ItemsMovedOut:
		w.applyMovedOut(&ev)
	case *ItemsMovedOut:
		if ev != nil {
			w.applyMovedOut(ev)
		}
	case ItemsMovedIn:
		w.applyMovedIn(&ev)
	case *ItemsMovedIn:
		if ev != nil {
			w.applyMovedIn(ev)
		}
	}
}

func (w *Workspace) applyCreated(e WorkspaceCreated) {
	if w.exists || e.WorkspaceID != w.id {
		return
	}
	w.exists = true
	w.name = e.Name
	w.owner = e.OwnerID
	w.shared = e.IsShared
	w.encrypted = e.IsEncrypted
	w.members[e.OwnerID] = Member{UserID: e.OwnerID, Name: e.Name}
}

func (w *Workspace) applyMemberAdded(e MemberAdded) {
	if !w.exists || e.WorkspaceID != w.id || w.IsMember(e.UserID) {
		return
	}
	m := Member{UserID: e.UserID, Name: e.Name}
	w.members[e.UserID] = m
	if e.RequestID != "" {
		w.reshares[e.RequestID] = append(slices.Clip(w.reshares[e.RequestID]), m)
	}
}

func (w *Workspace) applyMemberRemoved(e MemberRemoved) {
	if !w.exists || e.WorkspaceID != w.id || e.UserID == w.owner {
		return
	}
	delete(w.members, e.UserID)
}

func (w *Workspace) applyMemberUpdated(e MemberWorkspaceUpdated) {
	if !w.exists || e.WorkspaceID != w.id {
		return
	}
	if k := memberUpdateKey(e.UserID, e.RequestID); w.memberUpdates[k] == 0 {
		w.memberUpdates[k] = w.streamVersion
	}
	m, ok := w.members[e.UserID]
	if !ok {
		return
	}
	m.Name = e.Name
	m.ParentItemID = clonePtr(e.ParentItemID)
	w.members[e.UserID] = m
}

func (w *Workspace) applyCommitted(e *Committed) {
	if !w.exists || e.WorkspaceID != w.id {
		return
	}
	w.version++
	if _, ok := w.commits[e.RequestID]; !ok {
		w.commits[e.RequestID] = w.streamVersion
	}
	for _, o := range e.Items {
		if !o.Succeeded || !o.Stored || o.Metadata == nil || o.Metadata.ID == nil {
			continue
		}
		w.storeVersion(*o.Metadata, e.DeviceID) // compact copies what it keeps
	}
}

// storeVersion appends m as the next version of its item, if it is that; otherwise it
// does nothing.
func (w *Workspace) storeVersion(m ItemMetadata, device uuid.UUID) {
	id := *m.ID
	vs := w.items[id]
	if m.Version != int64(len(vs))+1 {
		return
	}
	var prev *storedVersion
	if len(vs) > 0 {
		prev = &vs[len(vs)-1]
	}
	w.used += liveSize(&m) - w.storedLive(prev)
	if m.Version == 1 && m.TempID != nil {
		k := tempKey{w.uuids.id(device), *m.TempID}
		if _, ok := w.tempIDs[k]; !ok {
			w.tempIDs[k] = id
		}
	}
	w.items[id] = append(vs, w.compact(&m))
}

// Decide decides cmd against w without changing w. It returns the event to append (at
// most one), or ReplayOf for a request already recorded, or a request-level error
// (ErrInvalidCommand, ErrNotFound, ErrAlreadyExists, ErrNotMember, ErrAlreadyMember,
// ErrOwnerIsMember) wrapped with detail.
func (w *Workspace) Decide(cmd WorkspaceCommand) (Decision, error) {
	switch c := cmd.(type) {
	case CreateWorkspace:
		return w.decideCreate(c)
	case *CreateWorkspace:
		if c != nil {
			return w.decideCreate(*c)
		}
	case AddMember:
		return w.decideAddMember(c)
	case *AddMember:
		if c != nil {
			return w.decideAddMember(*c)
		}
	case RemoveMember:
		return w.decideRemoveMember(c)
	case *RemoveMember:
		if c != nil {
			return w.decideRemoveMember(*c)
		}
	case UpdateMemberWorkspace:
		return w.decideUpdateMember(c)
	case *UpdateMemberWorkspace:
		if c != nil {
			return w.decideUpdateMember(*c)
		}
	case Commit:
		return w.decideCommit(&c)
	case *Commit:
		if c != nil {
			return w.decideCommit(c)
		}
	}
	return Decision{}, fmt.Errorf("decide %T on workspace %s: %w", cmd, w.id, ErrInvalidCommand)
}

func one(e Event) Decision { return Decision{Events: []Event{e}} }

func (w *Workspace) checkTarget(op string, id uuid.UUID) error {
	if id != w.id {
		return fmt.Errorf("%s: workspace %s sent to state of %s: %w", op, id, w.id, ErrInvalidCommand)
	}
	if !w.exists {
		return fmt.Errorf("%s: workspace %s: %w", op, w.id, ErrNotFound)
	}
	return nil
}

func (w *Workspace) decideCreate(c CreateWorkspace) (Decision, error) {
	switch {
	case c.WorkspaceID != w.id:
		return Decision{}, fmt.Errorf("create workspace %s sent to state of %s: %w", c.WorkspaceID, w.id, ErrInvalidCommand)
	case c.OwnerID == uuid.Nil:
		return Decision{}, fmt.Errorf("create workspace %s: nil owner: %w", w.id, ErrInvalidCommand)
	case checkName("workspaceName", c.Name) != nil:
		return Decision{}, fmt.Errorf("create workspace %s: %w", w.id, checkName("workspaceName", c.Name))
	case !validTime(c.At):
		return Decision{}, fmt.Errorf("create workspace %s: time out of range: %w", w.id, ErrInvalidCommand)
	case w.exists:
		return Decision{}, fmt.Errorf("create workspace %s: %w", w.id, ErrAlreadyExists)
	}
	return one(WorkspaceCreated{
		PrevHash: c.PrevHash, WorkspaceID: w.id, Name: c.Name, OwnerID: c.OwnerID,
		IsShared: c.IsShared, IsEncrypted: c.IsEncrypted, At: NormalizeTime(c.At),
	}), nil
}

func (w *Workspace) decideAddMember(c AddMember) (Decision, error) {
	if err := w.checkTarget("add member", c.WorkspaceID); err != nil {
		return Decision{}, err
	}
	name := c.Name
	if name == "" {
		name = w.name
	}
	switch {
	case c.UserID == uuid.Nil:
		return Decision{}, fmt.Errorf("add member to %s: nil user: %w", w.id, ErrInvalidCommand)
	case checkName("workspaceName", name) != nil:
		return Decision{}, fmt.Errorf("add member %s to %s: %w", c.UserID, w.id, checkName("workspaceName", name))
	case !validTime(c.At):
		return Decision{}, fmt.Errorf("add member %s to %s: time out of range: %w", c.UserID, w.id, ErrInvalidCommand)
	case w.IsMember(c.UserID):
		return Decision{}, fmt.Errorf("add member %s to %s: %w", c.UserID, w.id, ErrAlreadyMember)
	}
	return one(MemberAdded{PrevHash: c.PrevHash, WorkspaceID: w.id, UserID: c.UserID, Name: name, At: NormalizeTime(c.At)}), nil
}

func (w *Workspace) decideRemoveMember(c RemoveMember) (Decision, error) {
	if err := w.checkTarget("remove member", c.WorkspaceID); err != nil {
		return Decision{}, err
	}
	switch {
	case !validTime(c.At):
		return Decision{}, fmt.Errorf("remove member %s from %s: time out of range: %w", c.UserID, w.id, ErrInvalidCommand)
	case c.UserID == w.owner:
		return Decision{}, fmt.Errorf("remove member %s from %s: %w", c.UserID, w.id, ErrOwnerIsMember)
	case !w.IsMember(c.UserID):
		return Decision{}, fmt.Errorf("remove member %s from %s: %w", c.UserID, w.id, ErrNotMember)
	}
	return one(MemberRemoved{PrevHash: c.PrevHash, WorkspaceID: w.id, UserID: c.UserID, At: NormalizeTime(c.At)}), nil
}

func (w *Workspace) decideUpdateMember(c UpdateMemberWorkspace) (Decision, error) {
	if !ValidRequestID(c.RequestID) {
		return Decision{}, fmt.Errorf("update workspace %s: requestId of %d bytes (1 to %d characters of UTF-8 without NUL): %w",
			c.WorkspaceID, len(c.RequestID), MaxRequestIDLen, ErrInvalidCommand)
	}
	if err := w.checkTarget("update workspace", c.WorkspaceID); err != nil {
		return Decision{}, err
	}
	if !w.IsMember(c.UserID) {
		return Decision{}, fmt.Errorf("update workspace %s by %s: %w", w.id, c.UserID, ErrNotMember)
	}
	if sv, ok := w.memberUpdates[memberUpdateKey(c.UserID, c.RequestID)]; ok {
		return Decision{ReplayOf: sv}, nil
	}
	switch {
	case checkName("workspaceName", c.Name) != nil:
		return Decision{}, fmt.Errorf("update workspace %s by %s: %w", w.id, c.UserID, checkName("workspaceName", c.Name))
	case c.ParentItemID != nil && !validItemID(*c.ParentItemID):
		return Decision{}, fmt.Errorf("update workspace %s by %s: parent item %d: %w", w.id, c.UserID, *c.ParentItemID, ErrInvalidCommand)
	case !validTime(c.At):
		return Decision{}, fmt.Errorf("update workspace %s by %s: time out of range: %w", w.id, c.UserID, ErrInvalidCommand)
	}
	return one(MemberWorkspaceUpdated{
		PrevHash: c.PrevHash, WorkspaceID: w.id, UserID: c.UserID, RequestID: c.RequestID,
		Name: c.Name, ParentItemID: clonePtr(c.ParentItemID), At: NormalizeTime(c.At),
	}), nil
}

// memberUpdateKey keys updateWorkspace requestIds per member: two members' requestIds
// never collide.
func memberUpdateKey(user uuid.UUID, requestID string) string {
	return user.String() + "\x00" + requestID
}
