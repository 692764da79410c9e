package domain

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Item field limits where PROTOCOL.md is silent (see doc.go).
const (
	// MaxItemSize bounds an item's size: sizes are JSON integers, exact below 2^53.
	MaxItemSize int64 = 1<<53 - 1
	// MaxMimetypeBytes bounds an item's mimetype.
	MaxMimetypeBytes = 255
	// MaxChunkNameBytes bounds each chunk name.
	MaxChunkNameBytes = 255
)

// ErrEventTooLarge refuses a commit whose event would exceed Limits.MaxEventBytes. It
// wraps ErrInvalidCommand: the device must split the request.
var ErrEventTooLarge = fmt.Errorf("the commit's event would be too large: split it into smaller requests: %w", ErrInvalidCommand)

func validTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// decideCommit implements PROTOCOL.md §5 for one commit request.
func (w *Workspace) decideCommit(c *Commit) (Decision, error) {
	d, _, err := w.decideCommitSteps(c)
	return d, err
}

// decideCommitSteps is decideCommit that also returns the number of steps its walks up
// ancestor chains took (the cost that Limits.MaxFolderDepth bounds).
func (w *Workspace) decideCommitSteps(c *Commit) (Decision, int, error) {
	lim := c.Limits.WithDefaults()
	if err := w.checkCommit(c, lim); err != nil {
		return Decision{}, 0, err
	}
	if sv, ok := w.commits[c.RequestID]; ok {
		return Decision{ReplayOf: sv}, 0, nil
	}
	if err := w.checkCommitBody(c, lim); err != nil {
		return Decision{}, 0, err
	}

	t := &commitTxn{w: w, c: c, lim: lim, local: map[int64]ItemID{}, created: map[int64]ItemID{}, failed: map[int64]bool{}, added: map[ItemID][]ItemMetadata{}, stored: map[ItemID]*ItemMetadata{}, used: w.used}
	outcomes := make([]ItemOutcome, len(c.Items))
	size := estimateCommitted(c)
	for i := range c.Items {
		it := &c.Items[i]
		outcomes[i] = t.item(it)
		if size += estimateOutcome(&outcomes[i]); size > lim.MaxEventBytes {
			return Decision{}, t.steps, fmt.Errorf("commit %q to %s: over %d bytes at item %d of %d (limit %d bytes per event): %w",
				c.RequestID, w.id, size, i+1, len(c.Items), lim.MaxEventBytes, ErrEventTooLarge)
		}
		if it.ID == nil && it.TempID != nil && !outcomes[i].Succeeded {
			if _, ok := t.local[*it.TempID]; !ok {
				t.failed[*it.TempID] = true
			}
		}
	}
	return one(Committed{
		PrevHash:         c.PrevHash,
		WorkspaceID:      w.id,
		WorkspaceVersion: w.version + 1,
		RequestID:        c.RequestID,
		UserID:           c.UserID,
		DeviceID:         c.DeviceID,
		CommittedAt:      NormalizeTime(c.At),
		Items:            outcomes,
		LimitQuota:       c.QuotaLimit,
		UsedQuota:        c.OwnerUsedElsewhere + t.used,
		WorkspaceUsed:    t.used,
	}), t.steps, nil
}

// checkCommit checks what comes before a replay: the ids, the workspace, membership.
func (w *Workspace) checkCommit(c *Commit, lim Limits) error {
	switch {
	case !ValidRequestID(c.RequestID):
		return fmt.Errorf("commit to %s: requestId of %d bytes (1 to %d characters of UTF-8 without NUL): %w",
			c.WorkspaceID, len(c.RequestID), MaxRequestIDLen, ErrInvalidCommand)
	case c.WorkspaceID == uuid.Nil || c.UserID == uuid.Nil || c.DeviceID == uuid.Nil:
		return fmt.Errorf("commit %q: nil workspace, user or device id: %w", c.RequestID, ErrInvalidCommand)
	case lim.Validate() != nil:
		return fmt.Errorf("commit %q: %w: %w", c.RequestID, lim.Validate(), ErrInvalidCommand)
	}
	if err := w.checkTarget("commit "+c.RequestID, c.WorkspaceID); err != nil {
		return err
	}
	if !w.IsMember(c.UserID) {
		return fmt.Errorf("commit %q to %s by %s: %w", c.RequestID, w.id, c.UserID, ErrNotMember)
	}
	return nil
}

// checkCommitBody checks the request-level fields of a commit that is not a replay.
func (w *Workspace) checkCommitBody(c *Commit, lim Limits) error {
	if len(c.Items) == 0 || len(c.Items) > lim.MaxCommitItems {
		return fmt.Errorf("commit %q to %s: %d items, the limit is 1 to %d per commit: %w", c.RequestID, w.id, len(c.Items), lim.MaxCommitItems, ErrInvalidCommand)
	}
	if c.QuotaLimit < 0 || c.OwnerUsedElsewhere < 0 || !validTime(c.At) {
		return fmt.Errorf("commit %q to %s: negative quota figures or time out of range: %w", c.RequestID, w.id, ErrInvalidCommand)
	}
	need := 0
	for i := range c.Items {
		if c.Items[i].ID == nil {
			need++
		}
	}
	if len(c.NewItemIDs) < need {
		return fmt.Errorf("commit %q to %s: %d new item ids for %d new items: %w", c.RequestID, w.id, len(c.NewItemIDs), need, ErrInvalidCommand)
	}
	fresh := make(map[ItemID]bool, len(c.NewItemIDs))
	for _, id := range c.NewItemIDs {
		if !validItemID(id) || fresh[id] || len(w.items[id]) > 0 {
			return fmt.Errorf("commit %q to %s: new item id %d out of range, repeated or in use: %w", c.RequestID, w.id, id, ErrInvalidCommand)
		}
		fresh[id] = true
	}
	return nil
}

// commitTxn is the state of the workspace as one commit request sees it while it is
// decided: the stored state plus the versions accepted earlier in the same request.
type commitTxn struct {
	w       *Workspace
	c       *Commit
	lim     Limits
	local   map[int64]ItemID          // tempId → id, this request only
	created map[int64]ItemID          // tempId → id of the items this request created
	failed  map[int64]bool            // tempIds of new items this request failed to create
	added   map[ItemID][]ItemMetadata // versions accepted by this request, in order
	stored  map[ItemID]*ItemMetadata  // latest stored versions expanded so far (stored.go)
	used    int64
	nextNew int // index into c.NewItemIDs
	steps   int // steps taken up ancestor chains
}

// latest returns the item's latest version as this request sees it.
func (t *commitTxn) latest(id ItemID) (*ItemMetadata, bool) {
	if a := t.added[id]; len(a) > 0 {
		return &a[len(a)-1], true
	}
	if m := t.stored[id]; m != nil {
		return m, true
	}
	if m, ok := t.w.latest(id); ok {
		t.stored[id] = &m
		return &m, true
	}
	return nil, false
}

// version returns version n (≥ 1) of the item as this request sees it.
func (t *commitTxn) version(id ItemID, n int64) *ItemMetadata {
	vs := t.w.items[id]
	if n >= 1 && n <= int64(len(vs)) {
		m := t.w.expand(id, int(n), &vs[n-1])
		return &m
	}
	a := t.added[id]
	if i := n - int64(len(vs)) - 1; i >= 0 && i < int64(len(a)) {
		return &a[i]
	}
	return nil
}

// item decides one item of the request (PROTOCOL.md §5 rules 1 to 6).
func (t *commitTxn) item(req *ItemMetadata) ItemOutcome {
	out := ItemOutcome{CommittedVersion: req.Version}

	// Rule 1: resolve parent and id through this request's tempIds, then a new item
	// through the (device, tempId) pairs of earlier commits. The parent is resolved
	// first: resolving the id may add the item's tempId to this request's own.
	parent := t.resolveParent(req.ParentID)
	id, known := t.resolveID(req)

	// Rule 2: a new item.
	if !known {
		return t.newItem(out, req, parent)
	}

	if !validItemID(id) {
		return failItem(out, ReasonInvalidItem, nil)
	}
	cur, ok := t.latest(id)
	if !ok {
		return failItem(out, ReasonInvalidItem, nil)
	}
	// Rule 3: the version.
	switch {
	case req.Version < 1:
		return failItem(out, ReasonInvalidItem, cur)
	case req.Version <= cur.Version:
		return t.resent(out, req, id, parent, cur)
	case req.Version != cur.Version+1:
		return failItem(out, ReasonWrongVersion, cur)
	}
	// Rules 4–6: the next version.
	m := t.build(req, id, parent, cur)
	if r := t.validate(req, &m, cur); r != "" {
		return failItem(out, r, cur)
	}
	t.store(m)
	return t.accepted(out, m)
}

// failItem is out failed for reason r; cur, the item's current version as this request
// sees it, is copied into the outcome when the item exists (see failedMetadata).
func failItem(out ItemOutcome, r Reason, cur *ItemMetadata) ItemOutcome {
	out.Reason = r
	if cur != nil {
		m := failedMetadata(cur)
		out.Metadata = &m
	}
	return out
}

// resolve maps x through this request's tempIds (rule 1). A tempId whose creation
// failed earlier in this request resolves to no item (id 0 is never assigned), so its
// children fail with parentNotFound instead of landing under an unrelated item whose id
// happens to equal the tempId.
func (t *commitTxn) resolve(x ItemID) ItemID {
	if id, ok := t.local[int64(x)]; ok {
		return id
	}
	if t.failed[int64(x)] {
		return 0
	}
	return x
}

// resolveParent returns a copy of the requested parent id, resolved (rule 1).
func (t *commitTxn) resolveParent(p *ItemID) *ItemID {
	parent := clonePtr(p)
	if parent != nil {
		r := t.resolve(*parent)
		parent = &r
	}
	return parent
}

// resolveID returns the id of the item req names and whether it names an existing
// item (rule 1). A new item's tempId that an earlier commit of the same device created
// is remembered as this request's own.
func (t *commitTxn) resolveID(req *ItemMetadata) (ItemID, bool) {
	if req.ID != nil {
		// An id resolves only through the tempIds of items created earlier in this
		// request (§5 rule 1); anything else is a real id, taken as it is.
		id := *req.ID
		if x, ok := t.created[int64(id)]; ok {
			id = x
		}
		return id, true
	}
	if req.TempID != nil {
		if x, ok := t.local[*req.TempID]; ok {
			return x, true
		}
		if x, ok := t.w.tempItem(t.c.DeviceID, *req.TempID); ok {
			t.local[*req.TempID] = x
			return x, true
		}
	}
	return 0, false
}

// newItem decides an item that names no existing item (rule 2): version 1 with status
// NEW, stored under the next of the command's new item ids.
func (t *commitTxn) newItem(out ItemOutcome, req *ItemMetadata, parent *ItemID) ItemOutcome {
	switch {
	case req.Version < 1:
		return failItem(out, ReasonInvalidItem, nil)
	case req.Version != 1:
		return failItem(out, ReasonWrongVersion, nil)
	case req.Status != StatusNew:
		return failItem(out, ReasonInvalidItem, nil)
	}
	newID := t.c.NewItemIDs[t.nextNew]
	m := t.build(req, newID, parent, nil)
	if r := t.validate(req, &m, nil); r != "" {
		return failItem(out, r, nil)
	}
	t.nextNew++
	t.store(m)
	if req.TempID != nil {
		t.local[*req.TempID] = newID
		t.created[*req.TempID] = newID
	}
	return t.accepted(out, m)
}

// resent decides a version the item already has (rule 3): it succeeds, storing
// nothing, when the request holds what that version holds once built on the version
// before it; otherwise it fails with wrongVersion.
func (t *commitTxn) resent(out ItemOutcome, req *ItemMetadata, id ItemID, parent *ItemID, cur *ItemMetadata) ItemOutcome {
	stored := t.version(id, req.Version)
	if stored == nil {
		return failItem(out, ReasonWrongVersion, cur)
	}
	norm := t.build(req, id, parent, t.version(id, req.Version-1))
	if !sameContent(&norm, stored) {
		return failItem(out, ReasonWrongVersion, cur)
	}
	m := stored.Clone()
	out.Succeeded = true
	out.Metadata = &m
	return out
}

// failedMetadata is the copy of the server's current version cur that a failed item's
// outcome carries: without its chunk list (nil) when that holds more than
// MaxFailedOutcomeChunks, so that a small failed request never copies large stored data.
func failedMetadata(cur *ItemMetadata) ItemMetadata {
	if len(cur.Chunks) > MaxFailedOutcomeChunks {
		m := *cur
		m.Chunks = nil
		return m.Clone()
	}
	return cur.Clone()
}

func (t *commitTxn) accepted(out ItemOutcome, m ItemMetadata) ItemOutcome {
	c := m.Clone()
	out.Succeeded = true
	out.Stored = true
	out.Metadata = &c
	return out
}

// build returns the version req would be stored as (rule 5 and normalisation): the
// command's device and workspace, the request's tempId, modifiedAt in UTC to the
// millisecond, the previous version's name and parent unless the status is RENAMED,
// MOVED or DELETED, size 0 when DELETED, and an empty (not nil) chunk list.
func (t *commitTxn) build(req *ItemMetadata, id ItemID, parent *ItemID, prev *ItemMetadata) ItemMetadata {
	m := ItemMetadata{
		ID:            &id,
		TempID:        clonePtr(req.TempID),
		Version:       req.Version,
		DeviceID:      t.c.DeviceID,
		WorkspaceID:   t.c.WorkspaceID,
		ParentID:      clonePtr(parent),
		ParentVersion: clonePtr(req.ParentVersion),
		Status:        req.Status,
		ModifiedAt:    NormalizeTime(req.ModifiedAt),
		Checksum:      req.Checksum,
		Chunks:        append([]string{}, req.Chunks...),
		Size:          req.Size,
		IsFolder:      req.IsFolder,
		Filename:      req.Filename,
		Mimetype:      req.Mimetype,
	}
	if prev != nil && !changesPlace(req.Status) {
		m.Filename = prev.Filename
		m.ParentID = clonePtr(prev.ParentID)
		m.ParentVersion = clonePtr(prev.ParentVersion)
	}
	if m.Status == StatusDeleted {
		m.Size = 0
	}
	return m
}

// validate checks rules 4 and 6 for the candidate m built from req, whose previous
// version is prev (nil for a new item). It returns "" when m may be stored.
func (t *commitTxn) validate(req, m, prev *ItemMetadata) Reason {
	if r := validFields(req, m, t.lim); r != "" {
		return r
	}
	if prev != nil && (m.IsFolder != prev.IsFolder || m.Mimetype != prev.Mimetype) {
		return ReasonImmutableField
	}
	if !ValidName(m.Filename) {
		return ReasonInvalidName
	}
	if _, mount := t.w.shares[*m.ID]; mount && m.Status == StatusDeleted {
		// The owner's mount point of a shared workspace stays (PROTOCOL.md §8): deleting
		// it would leave the shared workspace mounted at a tombstone.
		return ReasonInvalidItem
	}
	if m.ParentID != nil {
		p, ok := t.latest(*m.ParentID)
		switch {
		case !ok:
			return ReasonParentNotFound
		case p.Status == StatusDeleted && m.Status != StatusDeleted:
			return ReasonParentNotFound
		case !p.IsFolder:
			return ReasonParentNotFolder
		case t.intoMount(m, prev):
			return ReasonParentNotFolder
		}
		// Only a placement (a new item, or a new parent) is measured: an item that
		// stays where it is was checked when it was placed there.
		if prev == nil || !ptrEqual(prev.ParentID, m.ParentID) {
			if r := t.place(*m.ParentID, *m.ID); r != "" {
				return r
			}
		}
	}
	delta := liveSize(m) - liveSize(prev)
	if t.c.QuotaLimit > 0 && delta > 0 && delta > t.c.QuotaLimit-t.c.OwnerUsedElsewhere-t.used {
		return ReasonQuotaExceeded
	}
	// Whatever the limit, a workspace holds at most MaxWorkspaceBytes, so the sums in
	// events and read models never overflow.
	if delta > 0 && delta > MaxWorkspaceBytes-t.used {
		return ReasonQuotaExceeded
	}
	return ""
}

// intoMount reports whether m, whose previous version is prev, would sit below the
// owner's mount point of a shared workspace: the folder's content lives in the shared
// workspace, so in this one it holds nothing (a new child would be hidden from every
// member). Only deleting an item already there (put there before this rule) is let
// through.
func (t *commitTxn) intoMount(m, prev *ItemMetadata) bool {
	if _, mount := t.w.shares[*m.ParentID]; !mount {
		return false
	}
	return prev == nil || !ptrEqual(prev.ParentID, m.ParentID) || m.Status != StatusDeleted
}

// validFields checks the ranges of an item's own fields.
func validFields(req, m *ItemMetadata, lim Limits) Reason {
	switch {
	case !m.Status.Valid(),
		req.Size < 0 || req.Size > MaxItemSize,
		req.ModifiedAt.IsZero() || !validTime(req.ModifiedAt),
		!validLabel(m.Mimetype, MaxMimetypeBytes),
		len(m.Chunks) > lim.MaxChunksPerItem,
		m.IsFolder && (m.Size != 0 || m.Checksum != 0 || len(m.Chunks) != 0):
		return ReasonInvalidItem
	}
	for _, ch := range m.Chunks {
		if ch == "" || !validLabel(ch, MaxChunkNameBytes) {
			return ReasonInvalidItem
		}
	}
	return ""
}

// place checks the ancestor chain of item self placed under parent: cycle if self is
// among its ancestors (a folder moved into itself), invalidItem if self would be
// deeper than Limits.MaxFolderDepth levels. It walks at most MaxFolderDepth steps,
// whatever the workspace holds, so a corrupt history with a loop cannot hang it either.
func (t *commitTxn) place(parent, self ItemID) Reason {
	node := parent
	// level is the level self would have if node were at the root.
	for level := 2; ; level++ {
		t.steps++
		if node == self {
			return ReasonCycle
		}
		if level > t.lim.MaxFolderDepth {
			return ReasonInvalidItem
		}
		m, ok := t.latest(node)
		if !ok || m.ParentID == nil {
			return ""
		}
		node = *m.ParentID
	}
}

// store records m as the next version of its item for the rest of the request.
func (t *commitTxn) store(m ItemMetadata) {
	prev, _ := t.latest(*m.ID)
	t.used += liveSize(&m) - liveSize(prev)
	t.added[*m.ID] = append(t.added[*m.ID], m)
}
