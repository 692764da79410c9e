package domain

import (
	"reflect"
	"testing"

	"github.com/google/uuid"
	"pgregory.net/rapid"
)

// TestShareProperties shares a random live folder of a random history (the sequences
// of TestDecideProperties), its move split into parts or not, and checks: the parts
// are each within the event bound and join into the unsplit move; the decision is
// deterministic; no item is lost or
// duplicated (the source keeps exactly the items outside the folder, the shared
// workspace gets the rest with every version); used bytes are conserved; nothing left
// in the source hangs below a moved item; the shared workspace lists parents before
// children; both streams' hash chains link on; and the events, encoded and decoded,
// fold into the same states.
func TestShareProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		r := randomTree(rt)
		var folders []ItemID
		for _, m := range r.w.Items() {
			if m.IsFolder && m.Status != StatusDeleted {
				folders = append(folders, *m.ID)
			}
		}
		if len(folders) == 0 {
			return
		}
		f := rapid.SampledFrom(folders).Draw(rt, "folder")
		before := r.w.Clone()
		c := ShareFolder{RequestID: "share", UserID: owner, SourceID: wsID, FolderID: f, Members: []uuid.UUID{member, newbie},
			At: t0, SourcePrevHash: "prev-hash"}
		target := NewWorkspace(before.ShareTarget(c))
		whole, err := DecideShare(r.w, target, c)
		if err != nil {
			rt.Fatalf("share %d: %v", f, err)
		}
		if rapid.Bool().Draw(rt, "split") {
			c.Limits.MaxEventBytes = rapid.IntRange(1100, 4000).Draw(rt, "maxEventBytes")
		}
		d, err := DecideShare(r.w, target, c)
		if err != nil {
			rt.Fatalf("share %d within %d bytes per event: %v", f, c.Limits.MaxEventBytes, err)
		}
		checkSplit(rt, whole, d, c.Limits.WithDefaults().MaxEventBytes)
		d2, _ := DecideShare(r.w, target, c)
		if !reflect.DeepEqual(d, d2) || !reflect.DeepEqual(before, r.w) {
			rt.Fatalf("DecideShare is not deterministic or changed the state")
		}
		src, dst := r.w.Clone(), target.Clone()
		for _, e := range d.Source {
			src.Evolve(e)
		}
		for _, e := range d.Target {
			dst.Evolve(e)
		}
		// Every item is in exactly one workspace, with all its versions.
		moved := map[ItemID]bool{}
		for _, m := range dst.Items() {
			moved[*m.ID] = true
		}
		for _, m := range before.Items() {
			id := *m.ID
			_, inSrc := src.Item(id)
			_, inDst := dst.Item(id)
			if inSrc == inDst {
				rt.Fatalf("item %d: in the source %v, in the shared workspace %v", id, inSrc, inDst)
			}
			if inDst && len(dst.ItemVersions(id)) != len(before.ItemVersions(id)) {
				rt.Fatalf("item %d: %d versions moved of %d", id, len(dst.ItemVersions(id)), len(before.ItemVersions(id)))
			}
			if inSrc && m.ParentID != nil && moved[*m.ParentID] {
				rt.Fatalf("item %d left in the source below moved item %d", id, *m.ParentID)
			}
		}
		if _, ok := src.Item(f); !ok || moved[f] {
			rt.Fatalf("the shared folder %d left the source", f)
		}
		if src.Used()+dst.Used() != before.Used() {
			rt.Fatalf("used %d + %d, was %d", src.Used(), dst.Used(), before.Used())
		}
		seen := map[ItemID]bool{}
		for _, m := range dst.Items() {
			if m.ParentID != nil && !seen[*m.ParentID] {
				rt.Fatalf("shared workspace: item %d listed before its parent %d", *m.ID, *m.ParentID)
			}
			seen[*m.ID] = true
		}
		if src.Version() != before.Version()+1 || dst.Version() != 1 {
			rt.Fatalf("workspace versions %d (was %d) and %d", src.Version(), before.Version(), dst.Version())
		}
		// Chains, and the stored form folds into the same states.
		checkChainT(rt, "prev-hash", d.Source)
		checkChainT(rt, "", d.Target)
		src2, dst2 := before.Clone(), NewWorkspace(d.TargetID)
		for _, pair := range []struct {
			w   *Workspace
			evs []Event
		}{{src2, d.Source}, {dst2, d.Target}} {
			for _, e := range pair.evs {
				typ, data, err := Encode(e)
				if err != nil {
					rt.Fatal(err)
				}
				back, err := Decode(typ, data)
				if err != nil {
					rt.Fatal(err)
				}
				pair.w.Evolve(back)
			}
		}
		if !reflect.DeepEqual(src2, src) || !reflect.DeepEqual(dst2, dst) {
			rt.Fatalf("the decoded events fold into other states")
		}
	})
}

// checkSplit checks the decision d of a share against whole, the same share decided
// with the default event bound: each event within maxBytes, the parts of each stream
// numbered, joining into whole's move, and followed in S by the same members.
func checkSplit(t tb, whole, d ShareDecision, maxBytes int) {
	t.Helper()
	var outs []ItemsMovedOut
	var ins []ItemsMovedIn
	for _, e := range append(append([]Event{}, d.Source...), d.Target...) {
		_, data, err := Encode(e)
		if err != nil || len(data) > maxBytes {
			t.Fatalf("%s of %d bytes, limit %d: %v", e.EventType(), len(data), maxBytes, err)
		}
		switch e := e.(type) {
		case ItemsMovedOut:
			outs = append(outs, e)
		case ItemsMovedIn:
			ins = append(ins, e)
		}
	}
	out, err1 := JoinMovedOut(outs)
	in, err2 := JoinMovedIn(ins)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(out, whole.Source[0]) || !reflect.DeepEqual(in, whole.Target[1]) {
		t.Fatalf("the parts (%d in W, %d in S) do not join into the unsplit move: %v, %v", len(outs), len(ins), err1, err2)
	}
	if len(outs) != len(d.Source) || len(d.Target) != 1+len(ins)+len(whole.Target)-2 {
		t.Fatalf("events: W %d (%d parts), S %d (%d parts); unsplit %d and %d", len(d.Source), len(outs), len(d.Target), len(ins),
			len(whole.Source), len(whole.Target))
	}
}

func checkChainT(t tb, prev string, evs []Event) {
	t.Helper()
	for i, e := range evs {
		if e.Prev() != prev {
			t.Fatalf("event %d (%s) carries prevHash %q, want %q", i, e.EventType(), e.Prev(), prev)
		}
		typ, data, err := Encode(e)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		prev = ChainHash(typ, data)
	}
}

// treeRun is a workspace grown by randomTree.
type treeRun struct{ w *Workspace }

// randomTree creates a personal workspace holding a random tree of folders and files,
// then changes, renames, moves and deletes random items (items the rules refuse simply
// fail), so that histories, deleted items and moved subtrees are all drawn.
func randomTree(rt *rapid.T) treeRun {
	w := NewWorkspace(wsID)
	apply := func(cmd WorkspaceCommand) {
		d, err := w.Decide(cmd)
		if err != nil {
			rt.Fatalf("%T: %v", cmd, err)
		}
		for _, e := range d.Events {
			w.Evolve(e)
		}
	}
	apply(CreateWorkspace{WorkspaceID: wsID, Name: "home", OwnerID: owner, At: t0})
	n := rapid.IntRange(1, 25).Draw(rt, "items")
	var items []ItemMetadata
	var folders []int64
	for i := range n {
		temp := int64(-1 - i)
		var parent *ItemID
		if len(folders) > 0 && rapid.IntRange(0, 3).Draw(rt, "nested") > 0 {
			parent = iid(ItemID(rapid.SampledFrom(folders).Draw(rt, "parent")))
		}
		if rapid.Bool().Draw(rt, "folder") {
			items = append(items, newFolder(temp, parent, "f"+string(rune('a'+i))))
			folders = append(folders, temp)
		} else {
			items = append(items, newFile(temp, parent, "x"+string(rune('a'+i)), int64(rapid.IntRange(0, 100).Draw(rt, "size"))))
		}
	}
	c := Commit{RequestID: "create", WorkspaceID: wsID, UserID: owner, DeviceID: dev1, Items: items, At: t0}
	for i := range items {
		c.NewItemIDs = append(c.NewItemIDs, ItemID(100+i))
	}
	apply(c)
	changes := rapid.IntRange(0, 30).Draw(rt, "changes")
	for k := range changes {
		all := w.Items()
		m := rapid.SampledFrom(all).Draw(rt, "item")
		var status Status
		var fn func(*ItemMetadata)
		switch rapid.IntRange(0, 3).Draw(rt, "action") {
		case 0:
			status = StatusChanged
			if !m.IsFolder {
				fn = func(x *ItemMetadata) { x.Size++; x.Checksum++ }
			}
		case 1:
			status, fn = StatusRenamed, func(x *ItemMetadata) { x.Filename += "r" }
		case 2:
			var to *ItemID
			if p := rapid.SampledFrom(all).Draw(rt, "to"); p.IsFolder && rapid.Bool().Draw(rt, "toFolder") {
				to = p.ID
			}
			status, fn = StatusMoved, func(x *ItemMetadata) { x.ParentID = clonePtr(to) }
		default:
			status, fn = StatusDeleted, func(x *ItemMetadata) { x.Size = 0 }
		}
		apply(Commit{RequestID: "change-" + string(rune('a'+k)), WorkspaceID: wsID, UserID: owner, DeviceID: dev2,
			Items: []ItemMetadata{next(m, *m.ID, status, fn)}, At: t0})
	}
	return treeRun{w: w}
}
