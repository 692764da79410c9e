package domain

import (
	"fmt"
	"testing"
)

// chain returns n new folders, each inside the previous one (tempIds 1…n, the first at
// the root).
func chain(n int) []ItemMetadata {
	items := make([]ItemMetadata, n)
	for i := range items {
		var parent *ItemID
		if i > 0 {
			parent = iid(ItemID(i))
		}
		items[i] = newFolder(int64(i+1), parent, fmt.Sprintf("d%d", i+1))
	}
	return items
}

// TestFolderDepth: an item placed (new or moved) deeper than MaxFolderDepth levels
// fails with invalidItem; at the limit it is accepted.
func TestFolderDepth(t *testing.T) {
	for _, lim := range []Limits{{}, {MaxFolderDepth: 4}} {
		max := lim.WithDefaults().MaxFolderDepth
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			h := newHist(t)
			items := chain(max + 1) // levels 1…max+1
			c := cmt(items...)
			c.Limits = lim
			e := oneCommitted(t, h.w, c)
			for i, o := range e.Items[:max] {
				if !o.Succeeded {
					t.Fatalf("level %d: %s", i+1, o.Reason)
				}
			}
			if o := e.Items[max]; o.Succeeded || o.Reason != ReasonInvalidItem || o.Metadata != nil {
				t.Fatalf("level %d: %+v, want invalidItem", max+1, o)
			}
			deepest, second := *e.Items[max-1].Metadata.ID, *e.Items[max-2].Metadata.ID
			top := *e.Items[0].Metadata.ID

			// A root file moved into the deepest folder would be at level max+1; into the
			// one above it at level max.
			f := newFile(9999, nil, "f", 1)
			h.commit(dev1, f)
			fid := h.nextID - 1
			move := func(parent ItemID) Commit {
				m := next(f, fid, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(parent) })
				c := cmt(m)
				c.RequestID = fmt.Sprint("move-", parent)
				c.NewItemIDs = nil
				c.Limits = lim
				return c
			}
			d, err := decide(t, h.w, move(deepest))
			if err != nil || d.Events[0].(Committed).Items[0].Reason != ReasonInvalidItem {
				t.Fatalf("move to level %d: %v %+v", max+1, err, d)
			}
			if e := oneCommitted(t, h.w, move(second)); !e.Items[0].Succeeded {
				t.Fatalf("move to level %d: %s", max, e.Items[0].Reason)
			}
			// A folder moved into its own subtree is still a cycle.
			sub := next(items[0], top, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(second) })
			c = cmt(sub)
			c.RequestID = "into-itself"
			c.NewItemIDs = nil
			c.Limits = lim
			d, err = decide(t, h.w, c)
			if err != nil || d.Events[0].(Committed).Items[0].Reason != ReasonCycle {
				t.Fatalf("folder into its own subtree: %v %+v", err, d)
			}
		})
	}
}

// TestPlacementWalkIsBounded: the cycle and depth checks walk at most MaxFolderDepth
// steps per placed item, even under a 10,000-deep chain (which an installation may
// already hold from before the limit) with 10,000 moves in one request. Counted in
// steps, not time: before the bound this took 10,000 steps per move (4.3 s of CPU).
func TestPlacementWalkIsBounded(t *testing.T) {
	const n = 10_000
	h := newHist(t)
	// Fold the deep chain straight in as a stored history: Decide would refuse it now.
	folders := chain(n)
	var outs []ItemOutcome
	for i := range folders {
		m := folders[i].Clone()
		m.ID = iid(ItemID(100 + i))
		if i > 0 {
			m.ParentID = iid(ItemID(100 + i - 1))
		}
		outs = append(outs, ItemOutcome{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &m})
	}
	var files []ItemMetadata
	for i := range n {
		f := newFile(int64(i+1), nil, fmt.Sprintf("f%d", i), 1)
		m := f.Clone()
		m.ID = iid(ItemID(100 + n + i))
		m.TempID = nil
		files = append(files, m)
		outs = append(outs, ItemOutcome{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &m})
	}
	h.w.Evolve(Committed{WorkspaceID: wsID, WorkspaceVersion: 1, RequestID: "deep", UserID: owner, DeviceID: dev1,
		CommittedAt: t0, Items: outs})
	if _, ok := h.w.Item(100 + n - 1); !ok {
		t.Fatal("chain not stored")
	}

	moves := make([]ItemMetadata, n)
	for i := range moves {
		moves[i] = next(files[i], *files[i].ID, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(100 + n - 1) })
	}
	d, steps, err := h.w.decideCommitSteps(&Commit{RequestID: "moves", WorkspaceID: wsID, UserID: owner, DeviceID: dev1,
		Items: moves, At: t0, Limits: Limits{MaxEventBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if bound := n * (DefaultMaxFolderDepth + 1); steps > bound {
		t.Fatalf("%d steps for %d moves, want at most %d", steps, n, bound)
	}
	for i, o := range d.Events[0].(Committed).Items {
		if o.Reason != ReasonInvalidItem {
			t.Fatalf("move %d: %q, want invalidItem (too deep)", i, o.Reason)
		}
	}
	t.Logf("%d moves under a %d-deep chain: %d steps", n, n, steps)
}
