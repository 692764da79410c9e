// Package changeset owns the shape of a rendered getChanges answer kept item by item:
// where each item's encoding lies in the answer's text, its parent and its size
// estimate. It orders items as getChanges does (parents first: depth first from the
// roots, siblings by id, items on a parent cycle last by id) and builds the answer of a
// later version of a workspace from a kept answer and the items changed since (Patch),
// byte for byte what a full read renders, without reading or rendering the others
// again. It does no I/O: projections reads and renders, transport/rpc keeps answers.
package changeset

import (
	"cmp"
	"slices"
)

// Item is one item of a rendered answer.
type Item struct {
	ID, Parent int64 // Parent: -1 when the item has none (item ids are positive)
	Off        int64 // where the item's encoding starts in the answer's text
	Len        int32 // its length (no comma)
	Size       int32 // the estimate of its encoded size that bounds answers (projections)
}

// Answer is a rendered getChanges answer: the JSON array of the items, as pieces to be
// written one after the other ("[" item "," item ... "]"), its items by id with their
// offsets in that concatenation, and the workspace's stamp it was read at. Patched says
// it was built from a kept answer (Patch) rather than read in full.
//
// Release, when not nil, frees memory outside Go's heap that pieces lie in (a full
// read's render blocks): its receiver calls it exactly once, after it has copied the
// pieces and before it drops the Answer, and never reads the pieces after it (they
// fault). Detach does that for a receiver that keeps the text.
type Answer struct {
	Pieces       [][]byte
	Items        []Item
	Version, Tag int64
	Patched      bool
	Release      func()
}

// Detach makes the answer's text one piece on the heap and releases what the pieces
// lay in (Release), if anything: for a receiver that keeps the pieces.
func (a *Answer) Detach() {
	if a.Release == nil {
		return
	}
	var n int
	for _, p := range a.Pieces {
		n += len(p)
	}
	text := make([]byte, 0, n)
	for _, p := range a.Pieces {
		text = append(text, p...)
	}
	a.Release()
	a.Pieces, a.Release = [][]byte{text}, nil
}

// Base is a kept answer to patch: its text (the whole array, "[" to "]"), its items by
// id with their offsets in Text, and the version it was read at.
type Base struct {
	Text    []byte
	Items   []Item
	Version int64
}

// Delta is what changed in a workspace after a Base's version: the latest encoding of
// every item written since (offsets in Text), by id, and the ids of the items that left
// the workspace (a share), sorted.
type Delta struct {
	Text    []byte
	Items   []Item
	Removed []int64
}

// Bytes returns the memory the items of an answer take (for cache budgets).
func Bytes(items []Item) int64 { return int64(cap(items)) * 32 }

// Estimate returns the sum of the size estimates of items.
func Estimate(items []Item) int64 {
	var n int64
	for i := range items {
		n += int64(items[i].Size)
	}
	return n
}

// The pieces of an answer that are not in a rendered item.
var (
	openBracket  = []byte{'['}
	closeBracket = []byte{']'}
	comma        = []byte{','}
)

// Patch returns the answer base would be after delta: base's items less those delta
// writes or removes, plus delta's items, in getChanges order (Order), as pieces that
// share base.Text and d.Text (runs of items that follow each other in base and in the
// new order are one piece), and the new items by id with their offsets in the
// concatenation of the pieces.
func Patch(base Base, d Delta) (pieces [][]byte, items []Item) {
	items, fromDelta := merge(base.Items, d)
	pieces = [][]byte{openBracket}
	var cur []byte // the piece being extended, of base.Text[curStart:curEnd]
	curStart, curEnd := int64(0), int64(-1)
	pos := int64(1)
	for i, k := range Order(items) {
		it := &items[k]
		if i > 0 {
			pos++ // the comma before it
		}
		switch {
		case !fromDelta[k] && cur != nil && it.Off == curEnd+1: // after the comma that follows cur
			cur = base.Text[curStart : it.Off+int64(it.Len)]
		default:
			if cur != nil {
				pieces = append(pieces, cur)
				cur = nil
			}
			if i > 0 {
				pieces = append(pieces, comma)
			}
			if fromDelta[k] {
				pieces = append(pieces, d.Text[it.Off:it.Off+int64(it.Len)])
			} else {
				cur, curStart = base.Text[it.Off:it.Off+int64(it.Len)], it.Off
			}
		}
		if cur != nil {
			curEnd = it.Off + int64(it.Len)
		}
		it.Off = pos
		pos += int64(it.Len)
	}
	if cur != nil {
		pieces = append(pieces, cur)
	}
	return append(pieces, closeBracket), items
}

// merge returns base's items less those d writes or removes, with d's items, by id,
// and which of them are d's (their Off is in d.Text; the others' in the base's text).
func merge(base []Item, d Delta) ([]Item, []bool) {
	out := make([]Item, 0, len(base)+len(d.Items))
	fromDelta := make([]bool, 0, cap(out))
	j, r := 0, 0
	for i := range base {
		id := base[i].ID
		for j < len(d.Items) && d.Items[j].ID < id {
			out, fromDelta = append(out, d.Items[j]), append(fromDelta, true)
			j++
		}
		for r < len(d.Removed) && d.Removed[r] < id {
			r++
		}
		if (j < len(d.Items) && d.Items[j].ID == id) || (r < len(d.Removed) && d.Removed[r] == id) {
			continue
		}
		out, fromDelta = append(out, base[i]), append(fromDelta, false)
	}
	for ; j < len(d.Items); j++ {
		out, fromDelta = append(out, d.Items[j]), append(fromDelta, true)
	}
	return out, fromDelta
}

// Order returns the positions of items (sorted by id) in getChanges order: depth first
// from the roots (items whose parent is none or not among items), siblings by id; items
// on a parent cycle, which the domain never stores, last by id rather than lost.
func Order(items []Item) []int32 {
	n := len(items)
	roots, first, kids := children(items)
	order := make([]int32, 0, n)
	done := make([]bool, n)
	stack := slices.Clone(roots)
	slices.Reverse(stack)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if done[i] {
			continue
		}
		done[i] = true
		order = append(order, i)
		for k := first[i+1] - 1; k >= first[i]; k-- {
			stack = append(stack, kids[k])
		}
	}
	for i := range n { // items on a parent cycle, by id
		if !done[i] {
			order = append(order, int32(i))
		}
	}
	return order
}

// children returns the positions in items (sorted by id) of the roots and the children
// of each item, in id order, as one flat list: the children of items[p] are
// kids[first[p]:first[p+1]].
func children(items []Item) (roots, first, kids []int32) {
	n := len(items)
	lastParent, lastPos := int64(-1), -1 // siblings come together: one search for them all
	pos := func(id int64) int {
		if id == lastParent {
			return lastPos
		}
		lastParent = id
		i, ok := slices.BinarySearchFunc(items, id, func(e Item, id int64) int { return cmp.Compare(e.ID, id) })
		lastPos = i
		if !ok {
			lastPos = -1
		}
		return lastPos
	}
	parentPos := make([]int32, n)
	first = make([]int32, n+1)
	for i := range items {
		p := -1
		if items[i].Parent >= 0 {
			p = pos(items[i].Parent)
		}
		parentPos[i] = int32(p)
		if p < 0 {
			roots = append(roots, int32(i))
		} else {
			first[p+1]++
		}
	}
	for i := range n {
		first[i+1] += first[i]
	}
	kids = make([]int32, first[n])
	fill := slices.Clone(first[:n])
	for i, p := range parentPos {
		if p >= 0 {
			kids[fill[p]] = int32(i)
			fill[p]++
		}
	}
	return roots, first, kids
}
