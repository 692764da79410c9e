package domain

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"
	"unsafe"
)

// storedVersion is one version of an item as a Workspace keeps it: the fields of
// ItemMetadata without what the workspace knows otherwise (the id is the key it is kept
// under, the version its place in the item's list), the optional integers inline with a
// flag instead of behind pointers, the device and workspace ids, the status, the
// mimetype and modifiedAt's zone as indexes into the workspace's tables of those (a
// workspace repeats a few of each), and the filename and the chunk names in one string
// (text). 96 bytes and one allocation for the strings instead of ItemMetadata's 216
// and its pointers', chunk list's and strings' allocations: the decided state of a
// 100,000-item workspace is most of what syncd keeps of it (docs/benchmarks.md, issue
// 14 sessions 6 and 7). expand gives back exactly the ItemMetadata compact took
// (TestStoredVersionRoundTrip).
type storedVersion struct {
	modSec        int64  // modifiedAt's Unix seconds
	text          string // storedText: the chunk names, then the filename
	tempID        int64
	parentVersion int64
	parentID      ItemID
	checksum      int64
	size          int64
	device, ws    uint32 // in Workspace.uuids
	status, mime  uint32 // in Workspace.labels
	modNsec       uint32 // modifiedAt's nanoseconds
	zone          uint32 // modifiedAt's Location, in Workspace.zones
	flags         uint8
}

// Flags of a storedVersion: which optional fields are set, and isFolder.
const (
	svTempID uint8 = 1 << iota
	svParentID
	svParentVersion
	svFolder
	svChunks // the chunk list is not nil
)

// storedText is a version's filename and chunk names in one string: the number of
// chunks, each chunk name after its length (uvarints), then the filename. A chunk list
// of one short name and the filename take one allocation of their bytes plus three.
func storedText(filename string, chunks []string) string {
	n := uvarintLen(uint64(len(chunks))) + len(filename)
	for _, c := range chunks {
		n += uvarintLen(uint64(len(c))) + len(c)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	b = append(b, filename...)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written to again
}

// uvarintLen is the length of binary.AppendUvarint's encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// splitText reads storedText's string back: the filename and the chunk names (a new
// list, nil when empty, whose names share text's bytes).
func splitText(text string) (filename string, chunks []string) {
	n, text := uvarintOf(text)
	if n > 0 {
		chunks = make([]string, n)
	}
	for i := range chunks {
		var l uint64
		l, text = uvarintOf(text)
		chunks[i], text = text[:l], text[l:]
	}
	return text, chunks
}

// uvarintOf reads the uvarint at the start of s (storedText wrote it) and returns it
// and the rest of s.
func uvarintOf(s string) (uint64, string) {
	var v uint64
	for i := 0; i < len(s); i++ {
		v |= uint64(s[i]&0x7f) << (7 * i)
		if s[i] < 0x80 {
			return v, s[i+1:]
		}
	}
	return v, ""
}

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

// zoneTable numbers the zones of a workspace's stored modifiedAt times. A fixed zone
// without a name (what a time decoded from text with a numeric offset carries, a new
// *time.Location for each decode unless the offset is a whole hour) is one zone per
// offset; any other location is itself.
type zoneTable struct {
	keys valueTable[zoneKey]
	locs []*time.Location // by number: the first location seen of each zone
}

// zoneKey is a location, or an unnamed fixed zone's offset (loc nil).
type zoneKey struct {
	loc    *time.Location
	offset int
}

// id returns the number of t's zone, adding it if it is new.
func (z *zoneTable) id(t time.Time) uint32 {
	loc := t.Location()
	k := zoneKey{loc: loc}
	if loc.String() == "" {
		if start, end := t.ZoneBounds(); start.IsZero() && end.IsZero() { // fixed: one offset forever
			_, k.offset = t.Zone()
			k.loc = nil
		}
	}
	i := z.keys.id(k)
	if int(i) == len(z.locs) {
		z.locs = append(z.locs, loc)
	}
	return i
}

// clone returns a copy that shares nothing mutable with z.
func (z *zoneTable) clone() zoneTable {
	return zoneTable{keys: z.keys.clone(), locs: slices.Clone(z.locs)}
}

// compact returns m as stored (m.ID and m.Version are where it is stored). It keeps
// nothing of m's but its status's and mimetype's strings when they are new to the
// workspace's table: the filename and chunk names are copied into one string.
func (w *Workspace) compact(m *ItemMetadata) storedVersion {
	s := storedVersion{modSec: m.ModifiedAt.Unix(), modNsec: uint32(m.ModifiedAt.Nanosecond()), //nolint:gosec // below 1e9
		zone: w.zones.id(m.ModifiedAt), text: storedText(m.Filename, m.Chunks), checksum: m.Checksum, size: m.Size,
		device: w.uuids.id(m.DeviceID), ws: w.uuids.id(m.WorkspaceID),
		status: w.labels.id(string(m.Status)), mime: w.labels.id(m.Mimetype)}
	if m.Chunks != nil {
		s.flags |= svChunks
	}
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

// expand returns version n of item id, stored as s. Its chunk list and pointers are
// its own.
func (w *Workspace) expand(id ItemID, n int, s *storedVersion) ItemMetadata {
	m := ItemMetadata{ID: &id, Version: int64(n), DeviceID: w.uuids.vals[s.device], WorkspaceID: w.uuids.vals[s.ws],
		Status: Status(w.labels.vals[s.status]), ModifiedAt: time.Unix(s.modSec, int64(s.modNsec)).In(w.zones.locs[s.zone]),
		Checksum: s.checksum, Size: s.size, IsFolder: s.flags&svFolder != 0, Mimetype: w.labels.vals[s.mime]}
	var chunks []string
	m.Filename, chunks = splitText(s.text)
	if s.flags&svChunks != 0 {
		m.Chunks = chunks
		if chunks == nil {
			m.Chunks = []string{}
		}
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
	c.zones = w.zones.clone()
}
