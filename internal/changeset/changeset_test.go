package changeset

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// render lays items (id -> parent, -1 none) out as a full read does: each item's text
// (its id, parent and a version tag, of varying length) in Order, comma-separated.
func render(items map[int64]int64, tag map[int64]int) Answer {
	var its []Item
	for _, id := range slices.Sorted(maps.Keys(items)) {
		its = append(its, Item{ID: id, Parent: items[id], Size: int32(tag[id])})
	}
	text := []byte{'['}
	for i, k := range Order(its) {
		if i > 0 {
			text = append(text, ',')
		}
		it := &its[k]
		it.Off = int64(len(text))
		text = fmt.Appendf(text, `{"id":%d,"p":%d,"v":"%s"}`, it.ID, it.Parent, bytes.Repeat([]byte("x"), tag[it.ID]%7))
		it.Len = int32(int64(len(text)) - it.Off)
	}
	return Answer{Pieces: [][]byte{append(text, ']')}, Items: its}
}

// TestPatchEqualsAFullRender patches random forests (moves that make cycles and
// orphans included) with random deltas of creates, changes, moves and removals, and
// checks the result, and a patch of the patch, against a full render.
func TestPatchEqualsAFullRender(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		items, tag := map[int64]int64{}, map[int64]int{}
		n := rng.IntN(60)
		for id := int64(1); id <= int64(n); id++ {
			items[id], tag[id] = -1, rng.IntN(20)
			if id > 1 && rng.IntN(4) > 0 {
				items[id] = 1 + rng.Int64N(id-1)
			}
		}
		base := render(items, tag)
		b := Base{Text: bytes.Join(base.Pieces, nil), Items: base.Items}
		for step := range 3 {
			var d Delta
			changed := map[int64]bool{}
			for range rng.IntN(6) {
				id := 1 + rng.Int64N(int64(n)+10)
				if changed[id] {
					continue
				}
				changed[id] = true
				if _, ok := items[id]; ok && rng.IntN(4) == 0 {
					delete(items, id)
					d.Removed = append(d.Removed, id)
					continue
				}
				items[id], tag[id] = -1, tag[id]+1+rng.IntN(5)
				if rng.IntN(3) > 0 {
					items[id] = 1 + rng.Int64N(int64(n)+10) // a missing parent, a cycle, itself
				}
			}
			want := render(items, tag)
			full := bytes.Join(want.Pieces, nil)
			for _, it := range want.Items { // the delta: the changed items' texts, from the full render
				if changed[it.ID] {
					it.Off, d.Text = int64(len(d.Text)), append(d.Text, full[it.Off:it.Off+int64(it.Len)]...)
					d.Items = append(d.Items, it)
				}
			}
			slices.Sort(d.Removed)
			pieces, got := Patch(b, d)
			text := bytes.Join(pieces, nil)
			if !bytes.Equal(text, full) {
				t.Fatalf("round %d step %d: patched\n%s\nwant\n%s", round, step, text, full)
			}
			for i := range got {
				got[i].Size = want.Items[i].Size
			}
			if !slices.Equal(got, want.Items) {
				t.Fatalf("round %d step %d: items\n%v\nwant\n%v", round, step, got, want.Items)
			}
			b = Base{Text: text, Items: got}
		}
	}
}

// TestPatchKeepsRuns checks that the items a patch leaves in place are copied as runs,
// not one piece each.
func TestPatchKeepsRuns(t *testing.T) {
	items, tag := map[int64]int64{}, map[int64]int{}
	for id := int64(1); id <= 1000; id++ {
		items[id] = -1
		if id%100 != 1 {
			items[id] = id - (id-1)%100
		}
	}
	base := render(items, tag)
	b := Base{Text: bytes.Join(base.Pieces, nil), Items: base.Items}
	items[2000] = 1
	want := render(items, tag)
	full := bytes.Join(want.Pieces, nil)
	var d Delta
	for _, it := range want.Items {
		if it.ID == 2000 {
			it.Off, d.Text = 0, full[it.Off:it.Off+int64(it.Len)]
			d.Items = []Item{it}
		}
	}
	pieces, _ := Patch(b, d)
	if text := bytes.Join(pieces, nil); !bytes.Equal(text, full) || len(pieces) > 8 {
		t.Fatalf("%d pieces (want a few runs), equal %v", len(pieces), bytes.Equal(text, full))
	}
}
