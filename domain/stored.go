package domain

import (
	"maps"
	"slices"
	"time"
)

// storedVersion is one version of an item as a Workspace keeps it: the fields of
// ItemMetadata without what the workspace knows otherwise (the id is the key it is kept
// under, the version its place in the item's list), the optional integers inline with a
// flag instead of behind pointers, the device and workspace ids, the status and the
// mimetype as indexes into the workspace's tables of those (a workspace repeats a few of
// each). 128 bytes instead of ItemMetadata's 216 and its pointers' allocations: the
// decided state of a 100,000-item workspace is most of what syncd keeps of it
// (docs/benchmarks.md, issue 14 session 6). expand gives back exactly the ItemMetadata
// compact took (TestStoredVersionRoundTrip).
type storedVersion struct {
	modifiedAt    time.Time
	filename      string
	chunks        []string
	tempID        int64
	parentVersion int64
	parentID      ItemID
	checksum      int64
	size          int64
	device, ws    uint32 // in Workspace.uuids
	status, mime  uint32 // in Workspace.labels
	flags         uint8
}

// Flags of a storedVersion: which optional fields are set, and isFolder.
const (
	svTempID uint8 = 1 << iota
	svParentID
	svParentVersion
	svFolder
)

// valueTable numbers the distinct values of one kind a workspace's versions hold.
type valueTable[T comparable] struct {
	vals  []T
	index map[T]uint32
}

// id returns v's number, adding it if it is new.
func (t *valueTable[T]) id(v T) uint32 {
	if i, ok := t.index[v]; ok {
		return i
	}
	if t.index == nil {
		t.index = map[T]uint32{}
	}
	i := uint32(len(t.vals)) //nolint:gosec // one per distinct value of a workspace's stored versions
	t.vals = append(t.vals, v)
	t.index[v] = i
	return i
}

// clone returns a copy that shares nothing mutable with t.
func (t *valueTable[T]) clone() valueTable[T] {
	return valueTable[T]{vals: slices.Clone(t.vals), index: maps.Clone(t.index)}
}

// compact returns m as stored (m.ID and m.Version are where it is stored). It keeps
// m's chunk list, which nobody changes in place.
func (w *Workspace) compact(m *ItemMetadata) storedVersion {
	s := storedVersion{modifiedAt: m.ModifiedAt, filename: m.Filename, chunks: m.Chunks, checksum: m.Checksum, size: m.Size,
		device: w.uuids.id(m.DeviceID), ws: w.uuids.id(m.WorkspaceID),
		status: w.labels.id(string(m.Status)), mime: w.labels.id(m.Mimetype)}
	if m.TempID != nil {
		s.flags, s.tempID = s.flags|svTempID, *m.TempID
	}
	if m.ParentID != nil {
		s.flags, s.parentID = s.flags|svParentID, *m.ParentID
	}
	if m.ParentVersion != nil {
		s.flags, s.parentVersion = s.flags|svParentVersion, *m.ParentVersion
	}
	if m.IsFolder {
		s.flags |= svFolder
	}
	return s
}

// expand returns version n of item id, stored as s. Its chunk list is the stored one
// (capped, so an append copies it): callers that hand it out clone it. Its pointers are
// its own.
func (w *Workspace) expand(id ItemID, n int, s *storedVersion) ItemMetadata {
	m := ItemMetadata{ID: &id, Version: int64(n), DeviceID: w.uuids.vals[s.device], WorkspaceID: w.uuids.vals[s.ws],
		Status: Status(w.labels.vals[s.status]), ModifiedAt: s.modifiedAt, Checksum: s.checksum, Size: s.size,
		IsFolder: s.flags&svFolder != 0, Filename: s.filename, Mimetype: w.labels.vals[s.mime]}
	if s.chunks != nil {
		m.Chunks = s.chunks[:len(s.chunks):len(s.chunks)]
	}
	if s.flags&svTempID != 0 {
		m.TempID = clonePtr(&s.tempID)
	}
	m.ParentID = s.parent()
	if s.flags&svParentVersion != 0 {
		m.ParentVersion = clonePtr(&s.parentVersion)
	}
	return m
}

// parent returns the parent id of s, nil at the root.
func (s *storedVersion) parent() *ItemID {
	if s.flags&svParentID == 0 {
		return nil
	}
	p := s.parentID
	return &p
}

// latest returns the latest version of item id, if it has one.
func (w *Workspace) latest(id ItemID) (ItemMetadata, bool) {
	vs := w.items[id]
	if len(vs) == 0 {
		return ItemMetadata{}, false
	}
	return w.expand(id, len(vs), &vs[len(vs)-1]), true
}

// versions returns every version of item id, oldest first, sharing the stored chunk
// lists.
func (w *Workspace) versions(id ItemID) []ItemMetadata {
	vs := w.items[id]
	out := make([]ItemMetadata, len(vs))
	for i := range vs {
		out[i] = w.expand(id, i+1, &vs[i])
	}
	return out
}

// storedLive is liveSize of a stored version.
func (w *Workspace) storedLive(s *storedVersion) int64 {
	if s == nil || Status(w.labels.vals[s.status]) == StatusDeleted {
		return 0
	}
	return s.size
}

// cloneTables gives c copies of w's tables (Workspace.Clone).
func (w *Workspace) cloneTables(c *Workspace) {
	c.uuids = w.uuids.clone()
	c.labels = w.labels.clone()
}
