package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// want is the expected outcome of one item.
type want struct {
	reason Reason // "" = succeeded
	stored bool
	meta   int64  // version of the outcome's metadata; 0 = nil metadata
	id     ItemID // id of the outcome's metadata; 0 = not checked
}

type commitCase struct {
	name  string
	given func(h *hist)
	when  Commit
	then  []want
	check func(t *testing.T, e Committed, w *Workspace)
}

// Base items shared by givens and whens. In a given, the first item created gets id 100,
// the next 101, …; in a when, 1000, 1001, ….
var (
	fileA   = newFile(1, nil, "a.txt", 10)
	folderF = newFolder(2, nil, "docs")
	// scenario file of reference §7 (AdvancedHandlerTest): v1 [a], v2 [a,b], v3 [b,c] 1900.
	scV1 = func() ItemMetadata { m := newFile(9, nil, "log.txt", 1000); m.Chunks = []string{"a"}; return m }()
	scV2 = next(scV1, 100, StatusChanged, func(m *ItemMetadata) { m.Chunks = []string{"a", "b"}; m.Size = 1500 })
	scV3 = next(scV2, 100, StatusChanged, func(m *ItemMetadata) { m.Chunks = []string{"b", "c"}; m.Size = 1900 })
)

func givenFileA(h *hist)    { h.commit(dev1, fileA) }
func givenScenario(h *hist) { h.commit(dev1, scV1); h.commit(dev1, scV2); h.commit(dev1, scV3) }

// givenTree: folder docs (100) holding folder sub (101) holding file b.txt (102).
func givenTree(h *hist) {
	h.commit(dev1, folderF, newFolder(3, iid(2), "sub"), newFile(4, iid(3), "b.txt", 5))
}

func withQuota(c Commit, limit, elsewhere int64) Commit {
	c.QuotaLimit, c.OwnerUsedElsewhere = limit, elsewhere
	return c
}

func itemAt(t *testing.T, w *Workspace, id ItemID) ItemMetadata {
	t.Helper()
	m, ok := w.Item(id)
	if !ok {
		t.Fatalf("item %d not found", id)
	}
	return m
}

func TestCommitRules(t *testing.T) {
	cases := []commitCase{
		// Rule 1: resolution of ids and parents.
		{
			name: "rule1: a parentId naming a tempId earlier in the request resolves to its new id",
			when: cmt(folderF, newFile(5, iid(2), "in.txt", 3)),
			then: []want{{stored: true, meta: 1, id: 1000}, {stored: true, meta: 1, id: 1001}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if p := itemAt(t, w, 1001).ParentID; p == nil || *p != 1000 {
					t.Fatalf("parent = %v, want 1000", p)
				}
			},
		},
		{
			name: "rule1: tempId chain folder + child + second version of the child in one request all succeed",
			when: cmt(folderF, newFile(5, iid(2), "in.txt", 3),
				ItemMetadata{TempID: i64(5), Version: 2, Status: StatusChanged, ModifiedAt: t0, Checksum: 77, Chunks: []string{"x"}, Size: 8, Filename: "in.txt", Mimetype: "text/plain"}),
			then: []want{{stored: true, meta: 1, id: 1000}, {stored: true, meta: 1, id: 1001}, {stored: true, meta: 2, id: 1001}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 1001); m.Version != 2 || m.Size != 8 || *m.ParentID != 1000 {
					t.Fatalf("child = %+v", m)
				}
				if w.Used() != 8 {
					t.Fatalf("used %d, want 8", w.Used())
				}
			},
		},
		{
			name: "rule1: an id naming a tempId earlier in the request resolves to its new id",
			when: cmt(newFile(-5, nil, "t.txt", 3),
				ItemMetadata{ID: iid(-5), Version: 2, Status: StatusChanged, ModifiedAt: t0, Checksum: 9, Chunks: []string{"y"}, Size: 4, Filename: "t.txt", Mimetype: "text/plain"}),
			then: []want{{stored: true, meta: 1, id: 1000}, {stored: true, meta: 2, id: 1000}},
		},
		{
			name: "rule1: a real id equal to a tempId matched from an earlier commit is taken as it is",
			given: func(h *hist) {
				h.commit(dev1, newFile(101, nil, "a.txt", 1), newFile(7, nil, "b.txt", 1)) // ids 100 (tempId 101) and 101
			},
			when: cmt(newFile(101, nil, "a.txt", 1), // a re-sent creation: resolves to item 100
				ItemMetadata{ID: iid(101), Version: 2, Status: StatusChanged, ModifiedAt: t0, Checksum: 5, Chunks: []string{"z"}, Size: 2, Filename: "b.txt", Mimetype: "text/plain"}),
			then: []want{{stored: false, meta: 1, id: 100}, {stored: true, meta: 2, id: 101}},
		},
		{
			name:  "rule1: a parentId naming a tempId whose creation failed in this request is parentNotFound, not an item with that id",
			given: func(h *hist) { h.commit(dev1, folderF) }, // a real folder with id 100
			when:  cmt(newFolder(100, nil, "bad/name"), newFile(6, iid(100), "child.txt", 1)),
			then:  []want{{reason: ReasonInvalidName}, {reason: ReasonParentNotFound}},
		},
		{
			name:  "rule1: a re-sent NEW with the same (device, tempId) resolves to the item created before, no duplicate",
			given: givenFileA,
			when:  cmt(fileA),
			then:  []want{{stored: false, meta: 1, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if n := len(w.Items()); n != 1 {
					t.Fatalf("%d items, want 1", n)
				}
			},
		},
		{
			name:  "rule1: a re-sent NEW of a parent and child by tempIds resolves both, no duplicates",
			given: func(h *hist) { h.commit(dev1, folderF, newFile(5, iid(2), "in.txt", 3)) },
			when:  cmt(folderF, newFile(5, iid(2), "in.txt", 3)),
			then:  []want{{meta: 1, id: 100}, {meta: 1, id: 101}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if n := len(w.Items()); n != 2 {
					t.Fatalf("%d items, want 2", n)
				}
			},
		},
		{
			name:  "rule1: a tempId of an earlier commit resolves a parent once the parent's re-sent creation resolved it",
			given: func(h *hist) { h.commit(dev1, folderF) },
			when:  cmt(folderF, newFile(5, iid(2), "late.txt", 3)),
			then:  []want{{meta: 1, id: 100}, {stored: true, meta: 1, id: 1000}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if p := itemAt(t, w, 1000).ParentID; p == nil || *p != 100 {
					t.Fatalf("parent = %v, want 100", p)
				}
			},
		},
		{
			name:  "rule1: the same tempId from another device is a new item",
			given: givenFileA,
			when:  func() Commit { c := cmt(fileA); c.DeviceID = dev2; return c }(),
			then:  []want{{stored: true, meta: 1, id: 1000}},
		},
		{
			name:  "rule1: a re-sent NEW whose content changed is wrongVersion with the current version",
			given: givenFileA,
			when:  cmt(newFile(1, nil, "a.txt", 11)),
			then:  []want{{reason: ReasonWrongVersion, meta: 1, id: 100}},
		},
		{
			name: "rule1: the command's deviceId and workspaceId are stored whatever the item says",
			when: func() Commit {
				m := fileA.Clone()
				m.DeviceID, m.WorkspaceID = dev2, otherWS
				return cmt(m)
			}(),
			then: []want{{stored: true, meta: 1, id: 1000}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 1000); m.DeviceID != dev1 || m.WorkspaceID != wsID {
					t.Fatalf("device %s workspace %s", m.DeviceID, m.WorkspaceID)
				}
			},
		},
		{
			name:  "rule1: a version from another device is stored with that device (scenario 5)",
			given: givenFileA,
			when:  func() Commit { c := cmt(next(fileA, 100, StatusChanged, nil)); c.DeviceID = dev2; return c }(),
			then:  []want{{stored: true, meta: 2, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if d := itemAt(t, w, 100).DeviceID; d != dev2 {
					t.Fatalf("device %s", d)
				}
			},
		},

		// Rule 2: new items.
		{
			name: "rule2: a new item at version 1 NEW gets the first NewItemID and echoes its tempId",
			when: cmt(fileA),
			then: []want{{stored: true, meta: 1, id: 1000}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				m := e.Items[0].Metadata
				if m.TempID == nil || *m.TempID != 1 || m.Filename != "a.txt" || m.Status != StatusNew {
					t.Fatalf("metadata %+v", m)
				}
			},
		},
		{
			name: "rule2: a new item at version 2 is wrongVersion with nil metadata (scenario 3)",
			when: cmt(func() ItemMetadata { m := fileA.Clone(); m.Version = 2; return m }()),
			then: []want{{reason: ReasonWrongVersion}},
		},
		{
			name: "rule2: a new item at version 1 with a status other than NEW is invalidItem",
			when: cmt(func() ItemMetadata { m := fileA.Clone(); m.Status = StatusChanged; return m }()),
			then: []want{{reason: ReasonInvalidItem}},
		},
		{
			name: "rule2: a new item at version 0 is invalidItem",
			when: cmt(func() ItemMetadata { m := fileA.Clone(); m.Version = 0; return m }()),
			then: []want{{reason: ReasonInvalidItem}},
		},
		{
			name:  "rule2: an id naming no item of this workspace is invalidItem with nil metadata",
			given: givenFileA,
			when:  cmt(at(fileA, 555, 2), at(fileA, -3, 2)),
			then:  []want{{reason: ReasonInvalidItem}, {reason: ReasonInvalidItem}},
		},
		{
			name: "rule2: a failed new item does not use up a new id",
			when: cmt(newFile(1, nil, "bad/name", 1), newFile(2, nil, "good", 1)),
			then: []want{{reason: ReasonInvalidName}, {stored: true, meta: 1, id: 1000}},
		},
		{
			name: "scenario 1: one commit carries v1 NEW, v2 CHANGED, v3 CHANGED of one file, all succeed in order",
			when: cmt(fileA,
				ItemMetadata{TempID: i64(1), Version: 2, Status: StatusChanged, ModifiedAt: t0, Size: 20, Checksum: 2, Chunks: []string{"b"}, Mimetype: "text/plain"},
				ItemMetadata{TempID: i64(1), Version: 3, Status: StatusChanged, ModifiedAt: t0, Size: 30, Checksum: 3, Chunks: []string{"c"}, Mimetype: "text/plain"}),
			then: []want{{stored: true, meta: 1, id: 1000}, {stored: true, meta: 2, id: 1000}, {stored: true, meta: 3, id: 1000}},
		},

		// Rule 3: versions.
		{
			name:  "rule3: v = s+1 is accepted (scenario 2)",
			given: func(h *hist) { givenScenario(h) },
			when:  cmt(next(scV3, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 2100 })),
			then:  []want{{stored: true, meta: 4, id: 100}},
		},
		{
			name:  "rule3: v > s+1 is wrongVersion with the current version",
			given: givenFileA,
			when:  cmt(at(fileA, 100, 3)),
			then:  []want{{reason: ReasonWrongVersion, meta: 1, id: 100}},
		},
		{
			name:  "rule3: an identical re-send of an older version succeeds as a duplicate with stored version v (scenario 4)",
			given: givenScenario,
			when:  cmt(at(scV1, 100, 1)),
			then:  []want{{meta: 1, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if !reflect.DeepEqual(*e.Items[0].Metadata, w.ItemVersions(100)[0]) {
					t.Fatalf("metadata is not stored version 1")
				}
			},
		},
		{
			name:  "rule3: an identical re-send of the latest version succeeds as a duplicate, even from another device",
			given: givenScenario,
			when:  func() Commit { c := cmt(scV3); c.DeviceID = dev2; return c }(),
			then:  []want{{meta: 3, id: 100}},
		},
		{
			name:  "rule3: a re-send with other chunks and size is wrongVersion with the current version (scenario 6)",
			given: givenScenario,
			when:  cmt(func() ItemMetadata { m := scV3.Clone(); m.Chunks = []string{"c", "e"}; m.Size = 2000; return m }()),
			then:  []want{{reason: ReasonWrongVersion, meta: 3, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if c := e.Items[0].Metadata.Chunks; !reflect.DeepEqual(c, []string{"b", "c"}) {
					t.Fatalf("returned chunks %v", c)
				}
			},
		},
		{
			name:  "rule3: a re-send differing only in chunks is wrongVersion",
			given: givenScenario,
			when:  cmt(func() ItemMetadata { m := scV3.Clone(); m.Chunks = []string{"c", "b"}; return m }()),
			then:  []want{{reason: ReasonWrongVersion, meta: 3, id: 100}},
		},
		{
			name:  "rule3: a re-send as RENAMED with another name and size is wrongVersion (scenario 7)",
			given: givenScenario,
			when: cmt(func() ItemMetadata {
				m := scV3.Clone()
				m.Status, m.Filename, m.Size = StatusRenamed, "conflict.log", 2000
				return m
			}()),
			then: []want{{reason: ReasonWrongVersion, meta: 3, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := e.Items[0].Metadata; m.Filename != "log.txt" || m.Status != StatusChanged {
					t.Fatalf("returned %q %s", m.Filename, m.Status)
				}
			},
		},
		{
			name:  "rule3: a re-send with another checksum is wrongVersion (scenario 8)",
			given: givenScenario,
			when:  cmt(func() ItemMetadata { m := scV3.Clone(); m.Checksum = 999; return m }()),
			then:  []want{{reason: ReasonWrongVersion, meta: 3, id: 100}},
		},
		{
			name: "rule3: a duplicate is compared after normalising like storing (CHANGED keeps the stored name)",
			given: func(h *hist) {
				h.commit(dev1, fileA)
				h.commit(dev1, next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Filename = "ignored.txt"; m.Size = 12 }))
			},
			when: cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Filename = "ignored.txt"; m.Size = 12 })),
			then: []want{{meta: 2, id: 100}},
		},
		{
			name: "rule3: a re-sent DELETED with its original size is a duplicate (size normalised to 0)",
			given: func(h *hist) {
				h.commit(dev1, fileA)
				h.commit(dev1, next(fileA, 100, StatusDeleted, nil))
			},
			when: cmt(next(fileA, 100, StatusDeleted, nil)),
			then: []want{{meta: 2, id: 100}},
		},
		{
			name:  "rule3: a known item at version 0 is invalidItem with the current version",
			given: givenFileA,
			when:  cmt(at(fileA, 100, 0)),
			then:  []want{{reason: ReasonInvalidItem, meta: 1, id: 100}},
		},

		// Rule 4: validity.
		{
			name: "rule4: a parent that does not exist is parentNotFound",
			when: cmt(newFile(1, iid(999), "a", 1)),
			then: []want{{reason: ReasonParentNotFound}},
		},
		{
			name: "rule4: a deleted parent is parentNotFound for a live version",
			given: func(h *hist) {
				h.commit(dev1, folderF)
				h.commit(dev1, next(folderF, 100, StatusDeleted, nil))
			},
			when: cmt(newFile(7, iid(100), "a", 1)),
			then: []want{{reason: ReasonParentNotFound}},
		},
		{
			name: "rule4: a CHANGED version keeping a parent deleted since is parentNotFound",
			given: func(h *hist) {
				givenTree(h)
				h.commit(dev1, next(newFolder(3, iid(100), "sub"), 101, StatusDeleted, nil))
			},
			when: cmt(next(newFile(4, iid(101), "b.txt", 5), 102, StatusChanged, func(m *ItemMetadata) { m.Size = 6 })),
			then: []want{{reason: ReasonParentNotFound, meta: 1, id: 102}},
		},
		{
			name:  "rule4: deleting a tree parent first works: a DELETED version only needs its parent to exist",
			given: givenTree,
			when: cmt(
				next(folderF, 100, StatusDeleted, nil),
				next(newFolder(3, iid(100), "sub"), 101, StatusDeleted, nil),
				next(newFile(4, iid(101), "b.txt", 5), 102, StatusDeleted, nil)),
			then: []want{{stored: true, meta: 2, id: 100}, {stored: true, meta: 2, id: 101}, {stored: true, meta: 2, id: 102}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if w.Used() != 0 || e.WorkspaceUsed != 0 {
					t.Fatalf("used %d / %d", w.Used(), e.WorkspaceUsed)
				}
			},
		},
		{
			name:  "rule4: a parent that is a file is parentNotFolder",
			given: givenFileA,
			when:  cmt(newFile(2, iid(100), "b", 1)),
			then:  []want{{reason: ReasonParentNotFolder}},
		},
		{
			name:  "rule4: a folder moved into its own descendant is cycle",
			given: givenTree,
			when:  cmt(next(folderF, 100, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(101) })),
			then:  []want{{reason: ReasonCycle, meta: 1, id: 100}},
		},
		{
			name:  "rule4: a folder moved into itself is cycle",
			given: givenTree,
			when:  cmt(next(folderF, 100, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(100) })),
			then:  []want{{reason: ReasonCycle, meta: 1, id: 100}},
		},
		{
			name:  "rule4: moving a folder next to itself is no cycle",
			given: givenTree,
			when:  cmt(next(newFolder(3, iid(100), "sub"), 101, StatusMoved, func(m *ItemMetadata) { m.ParentID = nil })),
			then:  []want{{stored: true, meta: 2, id: 101}},
		},
		{
			name:  "rule4: isFolder never changes (immutableField)",
			given: givenFileA,
			when:  cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.IsFolder = true; m.Size, m.Checksum, m.Chunks = 0, 0, nil })),
			then:  []want{{reason: ReasonImmutableField, meta: 1, id: 100}},
		},
		{
			name:  "rule4: mimetype never changes (immutableField)",
			given: givenFileA,
			when:  cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Mimetype = "image/png" })),
			then:  []want{{reason: ReasonImmutableField, meta: 1, id: 100}},
		},
		{
			name: "rule4: invalid names are invalidName; 255 bytes is valid",
			when: cmt(newFile(1, nil, "", 1), newFile(2, nil, ".", 1), newFile(3, nil, "..", 1), newFile(4, nil, "a/b", 1),
				newFile(5, nil, "a\x00b", 1), newFile(6, nil, strings.Repeat("x", 256), 1), newFile(7, nil, "\xff", 1),
				newFile(8, nil, strings.Repeat("é", 127)+"x", 1)),
			then: []want{{reason: ReasonInvalidName}, {reason: ReasonInvalidName}, {reason: ReasonInvalidName}, {reason: ReasonInvalidName},
				{reason: ReasonInvalidName}, {reason: ReasonInvalidName}, {reason: ReasonInvalidName}, {stored: true, meta: 1, id: 1000}},
		},
		{
			name:  "rule4: a RENAMED to an invalid name is invalidName with the current version",
			given: givenFileA,
			when:  cmt(next(fileA, 100, StatusRenamed, func(m *ItemMetadata) { m.Filename = ".." })),
			then:  []want{{reason: ReasonInvalidName, meta: 1, id: 100}},
		},
		{
			name: "rule4: fields out of range are invalidItem",
			when: cmt(
				func() ItemMetadata { m := newFile(1, nil, "neg", 1); m.Size = -1; return m }(),
				func() ItemMetadata { m := newFile(2, nil, "st", 1); m.Status = "FOO"; return m }(),
				func() ItemMetadata { m := newFile(3, nil, "t", 1); m.ModifiedAt = time.Time{}; return m }(),
				func() ItemMetadata { m := newFolder(4, nil, "fs"); m.Size = 1; return m }(),
				func() ItemMetadata { m := newFolder(5, nil, "fc"); m.Checksum = 1; return m }(),
				func() ItemMetadata { m := newFolder(6, nil, "fk"); m.Chunks = []string{"x"}; return m }(),
				func() ItemMetadata { m := newFile(7, nil, "big", 1); m.Size = MaxItemSize + 1; return m }(),
				func() ItemMetadata { m := newFile(8, nil, "mt", 1); m.Mimetype = "\xfe"; return m }(),
				func() ItemMetadata { m := newFile(9, nil, "ck", 1); m.Chunks = []string{""}; return m }(),
			),
			then: []want{{reason: ReasonInvalidItem}, {reason: ReasonInvalidItem}, {reason: ReasonInvalidItem},
				{reason: ReasonInvalidItem}, {reason: ReasonInvalidItem}, {reason: ReasonInvalidItem},
				{reason: ReasonInvalidItem}, {reason: ReasonInvalidItem}, {reason: ReasonInvalidItem}},
		},
		{
			name: "rule4: modifiedAt is stored in UTC truncated to milliseconds",
			when: cmt(func() ItemMetadata {
				m := fileA.Clone()
				m.ModifiedAt = time.Date(2026, 1, 2, 5, 4, 5, 123456789, time.FixedZone("x", 2*3600))
				return m
			}()),
			then: []want{{stored: true, meta: 1, id: 1000}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				got := itemAt(t, w, 1000).ModifiedAt
				if want := time.Date(2026, 1, 2, 3, 4, 5, 123000000, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
					t.Fatalf("modifiedAt %v", got)
				}
			},
		},
		{
			name: "rule4: a violation fails its item, never the request (partial-failure batch)",
			when: cmt(newFile(1, nil, "ok1", 1), newFile(2, iid(999), "orphan", 1), folderF,
				func() ItemMetadata { m := newFile(3, nil, "neg", 1); m.Size = -5; return m }(), newFile(4, iid(2), "ok2", 2)),
			then: []want{{stored: true, meta: 1, id: 1000}, {reason: ReasonParentNotFound}, {stored: true, meta: 1, id: 1001},
				{reason: ReasonInvalidItem}, {stored: true, meta: 1, id: 1002}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if n := len(w.Items()); n != 3 || w.Used() != 3 {
					t.Fatalf("%d items, used %d", n, w.Used())
				}
			},
		},

		// Rule 5: what each status changes.
		{
			name:  "rule5: CHANGED keeps the previous name and parent whatever the request says",
			given: givenTree,
			when: cmt(next(newFile(4, iid(101), "b.txt", 5), 102, StatusChanged, func(m *ItemMetadata) {
				m.Filename, m.ParentID, m.Size = "other.txt", nil, 9
			})),
			then: []want{{stored: true, meta: 2, id: 102}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 102); m.Filename != "b.txt" || m.ParentID == nil || *m.ParentID != 101 || m.Size != 9 {
					t.Fatalf("item %+v", m)
				}
			},
		},
		{
			name:  "rule5: NEW after version 1 acts like CHANGED",
			given: givenFileA,
			when:  cmt(next(fileA, 100, StatusNew, func(m *ItemMetadata) { m.Filename = "other.txt"; m.Size = 4 })),
			then:  []want{{stored: true, meta: 2, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 100); m.Filename != "a.txt" || m.Size != 4 {
					t.Fatalf("item %+v", m)
				}
			},
		},
		{
			name:  "rule5: RENAMED changes the name, MOVED the parent",
			given: func(h *hist) { h.commit(dev1, folderF, fileA) },
			when: cmt(next(fileA, 101, StatusRenamed, func(m *ItemMetadata) { m.Filename = "b.txt" }),
				next(next(fileA, 101, StatusRenamed, func(m *ItemMetadata) { m.Filename = "b.txt" }), 101, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(100) })),
			then: []want{{stored: true, meta: 2, id: 101}, {stored: true, meta: 3, id: 101}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 101); m.Filename != "b.txt" || m.ParentID == nil || *m.ParentID != 100 {
					t.Fatalf("item %+v", m)
				}
			},
		},
		{
			name:  "rule5: DELETED sets size 0 and keeps a tombstone listed among the items",
			given: givenFileA,
			when:  cmt(next(fileA, 100, StatusDeleted, nil)),
			then:  []want{{stored: true, meta: 2, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				m := itemAt(t, w, 100)
				if m.Status != StatusDeleted || m.Size != 0 || len(w.Items()) != 1 || w.Used() != 0 {
					t.Fatalf("item %+v used %d", m, w.Used())
				}
			},
		},
		{
			name:  "rule5: a later version revives a tombstone and is charged its full size",
			given: func(h *hist) { h.commit(dev1, fileA); h.commit(dev1, next(fileA, 100, StatusDeleted, nil)) },
			when:  withQuota(cmt(at(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 40 }), 100, 3)), 45, 0),
			then:  []want{{stored: true, meta: 3, id: 100}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if m := itemAt(t, w, 100); m.Status != StatusChanged || w.Used() != 40 {
					t.Fatalf("item %+v used %d", m, w.Used())
				}
			},
		},

		// Rule 6: quota.
		{
			name:  "rule6: the owner is charged the size difference; notification figures",
			given: givenFileA,
			when:  withQuota(cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 25 }), newFile(2, nil, "b", 5)), 1000, 300),
			then:  []want{{stored: true, meta: 2, id: 100}, {stored: true, meta: 1, id: 1000}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if w.Used() != 30 || e.WorkspaceUsed != 30 || e.UsedQuota != 330 || e.LimitQuota != 1000 {
					t.Fatalf("used %d event %+v", w.Used(), e)
				}
			},
		},
		{
			name:  "rule6: an item exceeding the limit fails with quotaExceeded; reaching it exactly is allowed",
			given: givenFileA, // 10 bytes used
			when:  withQuota(cmt(newFile(2, nil, "b", 60), newFile(3, nil, "c", 31), newFile(4, nil, "d", 30)), 100, 0),
			then:  []want{{stored: true, meta: 1, id: 1000}, {reason: ReasonQuotaExceeded}, {stored: true, meta: 1, id: 1001}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if e.UsedQuota != 100 {
					t.Fatalf("usedQuota %d", e.UsedQuota)
				}
			},
		},
		{
			name: "rule6: without a limit a workspace still holds at most MaxWorkspaceBytes (the sums never overflow)",
			when: cmt(newFile(2, nil, "b", MaxItemSize), newFile(3, nil, "c", 1), newFile(4, nil, "d", MaxItemSize)),
			then: []want{{stored: true, meta: 1, id: 1000}, {reason: ReasonQuotaExceeded}, {reason: ReasonQuotaExceeded}},
			check: func(t *testing.T, e Committed, w *Workspace) {
				if w.Used() != MaxWorkspaceBytes || e.WorkspaceUsed != MaxWorkspaceBytes || e.UsedQuota < 0 {
					t.Fatalf("used %d, event %d/%d", w.Used(), e.WorkspaceUsed, e.UsedQuota)
				}
			},
		},
		{
			name: "rule6: bytes used elsewhere count against the limit",
			when: withQuota(cmt(newFile(2, nil, "b", 60)), 100, 41),
			then: []want{{reason: ReasonQuotaExceeded}},
		},
		{
			name:  "rule6: shrinking is allowed over the limit",
			given: givenFileA,
			when:  withQuota(cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 5 })), 1, 500),
			then:  []want{{stored: true, meta: 2, id: 100}},
		},
		{
			name: "rule6: a limit of 0 means no limit",
			when: withQuota(cmt(newFile(2, nil, "b", 1<<40)), 0, 1<<50),
			then: []want{{stored: true, meta: 1, id: 1000}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHist(t)
			if tc.given != nil {
				tc.given(h)
			}
			versionBefore := h.w.Version()
			e := oneCommitted(t, h.w, tc.when)
			if e.WorkspaceVersion != versionBefore+1 || h.w.Version() != versionBefore+1 {
				t.Fatalf("workspaceVersion %d after %d", e.WorkspaceVersion, versionBefore)
			}
			if len(tc.then) != len(e.Items) {
				t.Fatalf("want %d outcomes, got %d", len(tc.then), len(e.Items))
			}
			for i, w := range tc.then {
				o := e.Items[i]
				if o.CommittedVersion != tc.when.Items[i].Version {
					t.Errorf("item %d: committedVersion %d", i, o.CommittedVersion)
				}
				if o.Succeeded != (w.reason == "") || o.Reason != w.reason || o.Stored != w.stored {
					t.Errorf("item %d: got succeeded=%v stored=%v reason=%q, want stored=%v reason=%q", i, o.Succeeded, o.Stored, o.Reason, w.stored, w.reason)
					continue
				}
				switch {
				case w.meta == 0 && o.Metadata != nil:
					t.Errorf("item %d: want nil metadata, got %+v", i, o.Metadata)
				case w.meta != 0 && o.Metadata == nil:
					t.Errorf("item %d: want metadata version %d, got nil", i, w.meta)
				case w.meta != 0 && o.Metadata.Version != w.meta:
					t.Errorf("item %d: metadata version %d, want %d", i, o.Metadata.Version, w.meta)
				case w.id != 0 && (o.Metadata.ID == nil || *o.Metadata.ID != w.id):
					t.Errorf("item %d: metadata id %v, want %d", i, o.Metadata.ID, w.id)
				}
			}
			if tc.check != nil && !t.Failed() {
				tc.check(t, e, h.w)
			}
		})
	}
}
