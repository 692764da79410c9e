package domain

import (
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// DecideShare decides the share c against the state of its source workspace w and of
// its target t (the state of w.ShareTarget(c)), changing neither. Checks, in order:
// the command's fields (ErrInvalidCommand); w exists (ErrNotFound) and the caller is a
// member (ErrNotMember); a repeated requestId (ReplayOf); w is the caller's personal
// workspace, not a shared one (nested sharing: ErrInvalidCommand); the folder is an item
// of w, a folder, not deleted (ErrInvalidCommand); someone to share with (ErrNoMembers).
// A folder already shared adds the members not yet in its workspace; otherwise the
// folder may neither lie below nor hold another mount point (nested sharing), and a
// new shared workspace is decided, each of its events within Limits.MaxEventBytes
// (ErrShareTooLarge).
func DecideShare(w, t *Workspace, c ShareFolder) (ShareDecision, error) {
	if err := w.checkShareCommand(&c); err != nil {
		return ShareDecision{}, err
	}
	if r, ok := w.shareRequests[c.RequestID]; ok {
		return ShareDecision{TargetID: r.target, ReplayOf: r.version}, nil
	}
	folder, err := w.shareFolder(c)
	if err != nil {
		return ShareDecision{}, err
	}
	members := shareMembers(c)
	if len(members) == 0 {
		return ShareDecision{}, fmt.Errorf("share %d of %s: %w", c.FolderID, w.id, ErrNoMembers)
	}
	if s, ok := w.shares[c.FolderID]; ok {
		return reshare(t, s, c, folder.Filename, members)
	}
	if err := w.checkNotNested(c.FolderID, c.MountPoints); err != nil {
		return ShareDecision{}, err
	}
	target := SharedWorkspaceID(c.UserID, c.RequestID)
	switch {
	case t.id != target:
		return ShareDecision{}, fmt.Errorf("share %d of %s: state of %s given for the new workspace %s: %w",
			c.FolderID, w.id, t.id, target, ErrInvalidCommand)
	case t.exists:
		return ShareDecision{}, fmt.Errorf("share %d of %s: workspace %s: %w", c.FolderID, w.id, target, ErrAlreadyExists)
	}
	return w.decideNewShare(c, target, folder.Filename, members)
}

// ErrShareTooLarge refuses a share one of whose events would exceed Limits.MaxEventBytes
// (the folder holds too much history to move in one event).
var ErrShareTooLarge = fmt.Errorf("the share's events would be too large: %w", ErrInvalidCommand)

func (w *Workspace) checkShareCommand(c *ShareFolder) error {
	op := fmt.Sprintf("share %d of %s", c.FolderID, c.SourceID)
	switch {
	case !ValidRequestID(c.RequestID):
		return fmt.Errorf("%s: requestId of %d bytes (1 to %d characters of UTF-8 without NUL): %w",
			op, len(c.RequestID), MaxRequestIDLen, ErrInvalidCommand)
	case c.UserID == uuid.Nil:
		return fmt.Errorf("%s: nil user: %w", op, ErrInvalidCommand)
	case c.SourceID != w.id:
		return fmt.Errorf("%s: sent to state of %s: %w", op, w.id, ErrInvalidCommand)
	case !validItemID(c.FolderID):
		return fmt.Errorf("%s: item id out of range: %w", op, ErrInvalidCommand)
	case slices.Contains(c.Members, uuid.Nil):
		return fmt.Errorf("%s: nil member: %w", op, ErrInvalidCommand)
	case !validTime(c.At):
		return fmt.Errorf("%s: time out of range: %w", op, ErrInvalidCommand)
	case c.QuotaLimit < 0 || c.UsedQuota < 0:
		return fmt.Errorf("%s: negative quota figures: %w", op, ErrInvalidCommand)
	case c.Limits.WithDefaults().Validate() != nil:
		return fmt.Errorf("%s: %w", op, c.Limits.WithDefaults().Validate())
	case !w.exists:
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case !w.IsMember(c.UserID):
		return fmt.Errorf("%s by %s: %w", op, c.UserID, ErrNotMember)
	}
	return nil
}

// shareFolder checks that c shares a live folder of the caller's personal workspace and
// returns its latest version.
func (w *Workspace) shareFolder(c ShareFolder) (ItemMetadata, error) {
	op := fmt.Sprintf("share %d of %s", c.FolderID, w.id)
	switch {
	case w.shared:
		return ItemMetadata{}, fmt.Errorf("%s: nested sharing: the workspace is a shared one: %w", op, ErrInvalidCommand)
	case w.owner != c.UserID:
		return ItemMetadata{}, fmt.Errorf("%s: not the personal workspace of %s: %w", op, c.UserID, ErrInvalidCommand)
	}
	f, ok := w.Item(c.FolderID)
	switch {
	case !ok:
		return ItemMetadata{}, fmt.Errorf("%s: no such item in the workspace: %w", op, ErrInvalidCommand)
	case !f.IsFolder:
		return ItemMetadata{}, fmt.Errorf("%s: not a folder: %w", op, ErrInvalidCommand)
	case f.Status == StatusDeleted:
		return ItemMetadata{}, fmt.Errorf("%s: the folder is deleted: %w", op, ErrInvalidCommand)
	}
	return f, nil
}

// shareMembers returns c's members without the caller and without repeats, in order.
func shareMembers(c ShareFolder) []uuid.UUID {
	var out []uuid.UUID
	for _, m := range c.Members {
		if m != c.UserID && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// checkNotNested refuses a folder below a mount point, or holding one, or being or
// holding one of members, the caller's mount points of workspaces it is a member of.
func (w *Workspace) checkNotNested(folder ItemID, members []ItemID) error {
	for p, steps := w.parentOf(folder), 0; p != nil && steps <= len(w.items); p, steps = w.parentOf(*p), steps+1 {
		if s, ok := w.shares[*p]; ok {
			return fmt.Errorf("share %d of %s: nested sharing: folder %d above it is shared as %s: %w", folder, w.id, *p, s, ErrInvalidCommand)
		}
	}
	for _, id := range append(w.subtree(folder), folder) {
		if s, ok := w.shares[id]; ok && id != folder {
			return fmt.Errorf("share %d of %s: nested sharing: folder %d below it is shared as %s: %w", folder, w.id, id, s, ErrInvalidCommand)
		}
		if slices.Contains(members, id) {
			return fmt.Errorf("share %d of %s: nested sharing: item %d is where the caller mounts another workspace: %w", folder, w.id, id, ErrInvalidCommand)
		}
	}
	return nil
}

// parentOf returns the parent of the latest version of id (nil at the root or unknown).
func (w *Workspace) parentOf(id ItemID) *ItemID {
	vs := w.items[id]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1].parent()
}

// subtree returns the items below folder by their latest versions, deleted ones
// included, depth first: parents before children, siblings by ascending id.
func (w *Workspace) subtree(folder ItemID) []ItemID {
	children := map[ItemID][]ItemID{}
	for id, vs := range w.items {
		if len(vs) == 0 {
			continue
		}
		if p := vs[len(vs)-1].parent(); p != nil {
			children[*p] = append(children[*p], id)
		}
	}
	var out []ItemID
	seen := map[ItemID]bool{folder: true}
	stack := []ItemID{folder}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if id != folder {
			out = append(out, id)
		}
		kids := children[id]
		slices.Sort(kids)
		for i := len(kids) - 1; i >= 0; i-- {
			if !seen[kids[i]] {
				seen[kids[i]] = true
				stack = append(stack, kids[i])
			}
		}
	}
	return out
}

// rehome returns the versions of an item as they are stored in the shared workspace:
// WorkspaceID target, and a ParentID equal to folder (with its ParentVersion) null.
func rehome(vs []ItemMetadata, target uuid.UUID, folder ItemID) []ItemMetadata {
	out := make([]ItemMetadata, len(vs))
	for i := range vs {
		m := vs[i].Clone()
		m.WorkspaceID = target
		if m.ParentID != nil && *m.ParentID == folder {
			m.ParentID, m.ParentVersion = nil, nil
		}
		out[i] = m
	}
	return out
}

// chainEvents sets each event's PrevHash to the chain hash of the one before it (the first
// gets prev) and checks each encoded event against maxBytes. It also returns the
// events' encoded bytes.
func chainEvents(prev string, maxBytes int, events ...func(prev string) Event) ([]Event, int, error) {
	out := make([]Event, 0, len(events))
	total := 0
	for _, build := range events {
		e := build(prev)
		typ, data, err := Encode(e)
		if err != nil {
			return nil, 0, err
		}
		if len(data) > maxBytes {
			return nil, 0, fmt.Errorf("%s of %d bytes, limit %d: %w", typ, len(data), maxBytes, ErrShareTooLarge)
		}
		prev = ChainHash(typ, data)
		total += len(data)
		out = append(out, e)
	}
	return out, total, nil
}

// memberEvents are the MemberAdded builders of members to target, named name, recording
// requestID (a re-share's; empty for the members of a new shared workspace).
func memberEvents(c ShareFolder, target uuid.UUID, name, requestID string, members []uuid.UUID) []func(string) Event {
	out := make([]func(string) Event, len(members))
	for i, m := range members {
		out[i] = func(prev string) Event {
			return MemberAdded{PrevHash: prev, WorkspaceID: target, UserID: m, Name: name, At: NormalizeTime(c.At), RequestID: requestID}
		}
	}
	return out
}

// ErrTooManyMembers refuses a share that would give the shared workspace more than
// Limits.MaxMembers members.
var ErrTooManyMembers = fmt.Errorf("too many members for one shared workspace: %w", ErrInvalidCommand)

// checkMembers refuses n members of a shared workspace (its owner included) over the
// limit.
func checkMembers(c ShareFolder, n int) error {
	if limit := c.Limits.WithDefaults().MaxMembers; n > limit {
		return fmt.Errorf("%d members, the limit is %d: %w", n, limit, ErrTooManyMembers)
	}
	return nil
}

// reshare decides a share of a folder already shared as s: the members not yet in it.
func reshare(t *Workspace, s uuid.UUID, c ShareFolder, name string, members []uuid.UUID) (ShareDecision, error) {
	op := fmt.Sprintf("share %d of %s again", c.FolderID, c.SourceID)
	switch {
	case t.id != s:
		return ShareDecision{}, fmt.Errorf("%s: state of %s given for its workspace %s: %w", op, t.id, s, ErrInvalidCommand)
	case !t.exists || !t.shared || t.owner != c.UserID:
		return ShareDecision{}, fmt.Errorf("%s: workspace %s is not a shared workspace of %s: %w", op, s, c.UserID, ErrInvalidCommand)
	}
	if ms, ok := t.reshares[c.RequestID]; ok { // a retry: nothing new, its proposals again
		return ShareDecision{TargetID: s, ReplayMembers: slices.Clone(ms)}, nil
	}
	var added []uuid.UUID
	for _, m := range members {
		if !t.IsMember(m) {
			added = append(added, m)
		}
	}
	if err := checkMembers(c, len(t.members)+len(added)); err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	evs, _, err := chainEvents(c.TargetPrevHash, c.Limits.WithDefaults().MaxEventBytes, memberEvents(c, s, name, c.RequestID, added)...)
	if err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	return ShareDecision{TargetID: s, Target: evs, NewMembers: added}, nil
}

// decideNewShare decides the move of folder's subtree to the new shared workspace target.
// A move too large for one event is split into parts (share_parts.go); the share's
// events together stay within Limits.MaxShareBytes.
func (w *Workspace) decideNewShare(c ShareFolder, target uuid.UUID, name string, members []uuid.UUID) (ShareDecision, error) {
	op := fmt.Sprintf("share %d of %s", c.FolderID, w.id)
	if err := checkMembers(c, 1+len(members)); err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	ids := w.subtree(c.FolderID)
	items := make([]MovedItem, len(ids))
	var moved int64
	for i, id := range ids {
		vs := w.versions(id)
		items[i] = MovedItem{ID: id, Versions: rehome(vs, target, c.FolderID)}
		moved += liveSize(&vs[len(vs)-1])
	}
	at := NormalizeTime(c.At)
	lim := c.Limits.WithDefaults()
	outs, err := splitMovedOut(ItemsMovedOut{WorkspaceID: w.id, WorkspaceVersion: w.version + 1, RequestID: c.RequestID,
		UserID: c.UserID, At: at, ToWorkspaceID: target, FolderID: c.FolderID,
		LimitQuota: c.QuotaLimit, UsedQuota: c.UsedQuota, WorkspaceUsed: w.used - moved}, ids, lim.MaxEventBytes)
	if err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	ins, err := splitMovedIn(ItemsMovedIn{WorkspaceID: target, WorkspaceVersion: 1, RequestID: c.RequestID,
		UserID: c.UserID, At: at, FromWorkspaceID: w.id, FolderID: c.FolderID,
		LimitQuota: c.QuotaLimit, UsedQuota: c.UsedQuota, WorkspaceUsed: moved}, items, lim.MaxEventBytes, lim.MaxShareBytes)
	if err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	srcBuild := make([]func(string) Event, len(outs))
	for i, e := range outs {
		srcBuild[i] = func(prev string) Event { e.PrevHash = prev; return e }
	}
	source, srcBytes, err := chainEvents(c.SourcePrevHash, lim.MaxEventBytes, srcBuild...)
	if err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	dstBuild := []func(string) Event{func(prev string) Event {
		return WorkspaceCreated{PrevHash: prev, WorkspaceID: target, Name: name, OwnerID: c.UserID,
			IsShared: true, IsEncrypted: c.IsEncrypted, At: at}
	}}
	for _, e := range ins {
		dstBuild = append(dstBuild, func(prev string) Event { e.PrevHash = prev; return e })
	}
	evs, dstBytes, err := chainEvents(c.TargetPrevHash, lim.MaxEventBytes, append(dstBuild, memberEvents(c, target, name, "", members)...)...)
	if err != nil {
		return ShareDecision{}, fmt.Errorf("%s: %w", op, err)
	}
	if srcBytes+dstBytes > lim.MaxShareBytes {
		return ShareDecision{}, fmt.Errorf("%s: its events have %d bytes, the limit is %d (Limits.MaxShareBytes): %w",
			op, srcBytes+dstBytes, lim.MaxShareBytes, ErrShareTooLarge)
	}
	return ShareDecision{TargetID: target, Source: source, Target: evs, NewMembers: members}, nil
}

// applyMovedOut folds an ItemsMovedOut: the items leave, the folder becomes a mount
// point, the share's requestId is remembered, and the workspaceVersion advances.
func (w *Workspace) applyMovedOut(e *ItemsMovedOut) {
	if !w.exists || e.WorkspaceID != w.id {
		return
	}
	// A continuing part (Part > 0) repeats the first part's workspaceVersion and only
	// moves more items out.
	if e.Part == 0 {
		w.version++
		if _, ok := w.shareRequests[e.RequestID]; !ok {
			w.shareRequests[e.RequestID] = shareRecord{version: w.streamVersion, target: e.ToWorkspaceID}
		}
		if _, ok := w.shares[e.FolderID]; !ok {
			w.shares[e.FolderID] = e.ToWorkspaceID
		}
	}
	// The (device, tempId) pairs of moved items stay: a retried creation from before
	// the share resolves to its item, which is no longer here (invalidItem), and never
	// makes a duplicate.
	for _, id := range e.ItemIDs {
		vs := w.items[id]
		if len(vs) == 0 || id == e.FolderID {
			continue
		}
		w.used -= w.storedLive(&vs[len(vs)-1])
		delete(w.items, id)
	}
}

// applyMovedIn folds an ItemsMovedIn: each item arrives with its history, or (in a
// continuing part) with the next of its versions (versions that do not continue the
// item's known ones, 1, 2, …, are left out), and the folder becomes the owner's mount
// point. A continuing part (Part > 0) repeats the first part's workspaceVersion.
func (w *Workspace) applyMovedIn(e *ItemsMovedIn) {
	if !w.exists || e.WorkspaceID != w.id {
		return
	}
	if e.Part == 0 {
		w.version++
	}
	for _, it := range e.Items {
		if !validItemID(it.ID) || len(it.Versions) == 0 {
			continue
		}
		known := len(w.items[it.ID])
		ok := true
		for i, m := range it.Versions {
			ok = ok && m.ID != nil && *m.ID == it.ID && m.Version == int64(known+i+1)
		}
		if !ok {
			continue
		}
		for _, m := range it.Versions {
			w.storeVersion(m, m.DeviceID) // compact copies what it keeps
		}
	}
	if m, ok := w.members[w.owner]; ok && m.ParentItemID == nil {
		m.ParentItemID = clonePtr(&e.FolderID)
		w.members[w.owner] = m
	}
}
