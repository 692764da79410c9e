package domain

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// bigTree is shareTree with n more files in F (ids 106, 107, …).
func bigTree(t *testing.T, n int) *hist {
	h := shareTree(t)
	var items []ItemMetadata
	for i := range n {
		items = append(items, newFile(int64(-100-i), iid(100), fmt.Sprintf("file-%03d", i), int64(i)))
	}
	h.commit(dev1, items...)
	return h
}

// A move larger than one event is split into parts, in both streams, each event within
// MaxEventBytes; the parts fold into the same states as the unsplit move, join into it,
// and only the first part takes a workspaceVersion. A repeated request finds the first
// part of W.
func TestShareSplitsALargeMove(t *testing.T) {
	const maxBytes = 900
	whole, small := bigTree(t, 150), bigTree(t, 150)
	dWhole, sWhole := whole.share(shareCmd(100, member), nil)
	streamBefore := small.w.StreamVersion()
	c := shareCmd(100, member)
	c.Limits.MaxEventBytes = maxBytes
	d, s := small.share(c, nil)
	if len(dWhole.Source) != 1 || len(dWhole.Target) != 3 {
		t.Fatalf("unsplit: %d and %d events", len(dWhole.Source), len(dWhole.Target))
	}
	if len(d.Source) < 2 || len(d.Target) < 10 {
		t.Fatalf("split: %d events in W, %d in S; want several parts in both", len(d.Source), len(d.Target))
	}
	checkChain(t, dWhole.Source[0].Prev(), d.Source)
	checkChain(t, "", d.Target)
	var outs []ItemsMovedOut
	var ins []ItemsMovedIn
	for _, e := range append(append([]Event{}, d.Source...), d.Target...) {
		_, data, err := Encode(e)
		if err != nil || len(data) > maxBytes {
			t.Fatalf("%s of %d bytes (limit %d): %v", e.EventType(), len(data), maxBytes, err)
		}
		switch e := e.(type) {
		case ItemsMovedOut:
			outs = append(outs, e)
		case ItemsMovedIn:
			ins = append(ins, e)
		}
	}
	if _, ok := d.Target[len(ins)+1].(MemberAdded); !ok || len(outs) != len(d.Source) {
		t.Fatalf("S's events: WorkspaceCreated, %d parts, then %T", len(ins), d.Target[len(ins)+1])
	}
	for i, e := range ins {
		if e.Part != i || e.Parts != len(ins) || e.WorkspaceVersion != 1 || e.WorkspaceUsed != dWhole.Target[1].(ItemsMovedIn).WorkspaceUsed {
			t.Fatalf("part %d: %+v", i, e)
		}
	}
	joinedOut, err := JoinMovedOut(outs)
	if err != nil || !reflect.DeepEqual(joinedOut, dWhole.Source[0]) {
		t.Fatalf("joined ItemsMovedOut %+v, %v\nwant %+v", joinedOut, err, dWhole.Source[0])
	}
	joinedIn, err := JoinMovedIn(ins)
	if err != nil || !reflect.DeepEqual(joinedIn, dWhole.Target[1]) {
		t.Fatalf("joined ItemsMovedIn differs from the unsplit one: %v", err)
	}
	if !reflect.DeepEqual(s.Items(), sWhole.Items()) || s.Version() != 1 || s.Used() != sWhole.Used() {
		t.Fatalf("S folded from the parts differs from the unsplit move's")
	}
	if !reflect.DeepEqual(small.w.Items(), whole.w.Items()) || small.w.Version() != whole.w.Version() || small.w.Used() != whole.w.Used() {
		t.Fatalf("W folded from the parts differs from the unsplit move's")
	}
	again, err := decideShare(t, small.w, s, c)
	if err != nil || again.ReplayOf != streamBefore+1 {
		t.Fatalf("a repeated request: ReplayOf %d, %v; want W's first part, %d", again.ReplayOf, err, streamBefore+1)
	}
	// Parts out of order or missing do not join.
	if _, err := JoinMovedIn([]ItemsMovedIn{ins[1], ins[0]}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("parts out of order joined: %v", err)
	}
	if _, err := JoinMovedOut(outs[:1]); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("a missing part joined: %v", err)
	}
}

// An item whose history alone exceeds one event continues in the next part: the same
// id, its next versions.
func TestShareSplitsOneItemsHistory(t *testing.T) {
	h := shareTree(t)
	for i := range 12 {
		a, _ := h.w.Item(101)
		h.commit(dev1, next(a, 101, StatusChanged, func(m *ItemMetadata) { m.Size, m.Checksum = int64(20+i), int64(i) }))
	}
	c := shareCmd(100, member)
	c.Limits.MaxEventBytes = 1500
	d, s := h.share(c, nil)
	seen := 0
	for _, e := range d.Target {
		if in, ok := e.(ItemsMovedIn); ok {
			for _, it := range in.Items {
				if it.ID == 101 {
					seen++
				}
			}
		}
	}
	if seen < 2 {
		t.Fatalf("item 101 (14 versions) in %d parts, want it continued over several", seen)
	}
	if vs := s.ItemVersions(101); len(vs) != 14 || vs[13].Version != 14 {
		t.Fatalf("item 101 in S: %d versions", len(vs))
	}
}

// The owner's mount point F holds nothing in W once shared: a new item under it, or a
// move into it, fails (parentNotFolder: F is there and live, but its content is S's); F
// itself may be renamed and moved, not deleted (invalidItem). An item put under F before
// this rule may still be deleted.
func TestShareMountPointHoldsNothing(t *testing.T) {
	h := shareTree(t)
	h.share(shareCmd(100, member), nil)
	hid := *h.forge(dev1, newFile(-20, iid(100), "hidden", 3)).Items[0].Metadata.ID // from an older history
	f, _ := h.w.Item(100)
	c104, _ := h.w.Item(104)
	hidden, _ := h.w.Item(hid)
	cases := []struct {
		name   string
		items  []ItemMetadata
		reason []Reason // "" = accepted
	}{
		{"a new file in F", []ItemMetadata{newFile(-51, iid(100), "new", 1)}, []Reason{ReasonParentNotFolder}},
		{"a new folder in F", []ItemMetadata{newFolder(-52, iid(100), "new")}, []Reason{ReasonParentNotFolder}},
		{"a move into F", []ItemMetadata{next(c104, 104, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(100) })},
			[]Reason{ReasonParentNotFolder}},
		{"a deletion that moves into F", []ItemMetadata{next(c104, 104, StatusDeleted, func(m *ItemMetadata) { m.ParentID, m.Size = iid(100), 0 })},
			[]Reason{ReasonParentNotFolder}},
		{"a change of an item already in F", []ItemMetadata{next(hidden, hid, StatusChanged, func(m *ItemMetadata) { m.Size = 4 })},
			[]Reason{ReasonParentNotFolder}},
		{"deleting an item already in F", []ItemMetadata{next(hidden, hid, StatusDeleted, func(m *ItemMetadata) { m.Size = 0 })},
			[]Reason{""}},
		{"renaming F", []ItemMetadata{next(f, 100, StatusRenamed, func(m *ItemMetadata) { m.Filename = "F2" })}, []Reason{""}},
		{"moving F into a new folder", []ItemMetadata{newFolder(-53, nil, "X"),
			next(f, 100, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(-53) })}, []Reason{"", ""}},
		{"deleting F", []ItemMetadata{next(f, 100, StatusDeleted, nil)}, []Reason{ReasonInvalidItem}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := oneCommitted(t, h.w.Clone(), cmt(tc.items...))
			for i, o := range e.Items {
				if o.Reason != tc.reason[i] || o.Succeeded != (tc.reason[i] == "") {
					t.Fatalf("item %d: %+v, want reason %q", i, o, tc.reason[i])
				}
			}
		})
	}
}
