package domain

import (
	"fmt"
	"slices"
	"strconv"
)

// A share's move may exceed one event (Limits.MaxEventBytes): W's ItemsMovedOut holds
// every moved id, S's ItemsMovedIn every moved version. DecideShare then splits each
// into parts (Part 0, 1, …, Parts-1), adjacent in their stream and appended in the same
// atomic append, so the move stays one decision: W and S hold all of it or none of it.
// The whole share (every event of both streams) is bounded by Limits.MaxShareBytes.

// partHeadroom is what a part's header may grow by once Part and Parts are set (their
// digits, measured with placeholders of this many digits) and a little slack.
const partHeadroom = 64

// PartCount returns how many events the move e belongs to records (1 when unsplit).
func (e ItemsMovedOut) PartCount() int { return max(1, e.Parts) }

// PartCount returns how many events the move e belongs to records (1 when unsplit).
func (e ItemsMovedIn) PartCount() int { return max(1, e.Parts) }

// splitMovedOut splits head, whose ItemIDs are ids, into events of at most maxBytes.
func splitMovedOut(head ItemsMovedOut, ids []ItemID, maxBytes int) ([]ItemsMovedOut, error) {
	h := head
	h.ItemIDs, h.Part, h.Parts = []ItemID{}, 99999, 99999
	hdr := encodedLen(h)
	budget := maxBytes - hdr - partHeadroom
	var parts [][]ItemID
	cur, size := []ItemID{}, 0
	for _, id := range ids {
		n := len(strconv.FormatInt(int64(id), 10)) + 1
		if size+n > budget && len(cur) > 0 {
			parts, cur, size = append(parts, cur), []ItemID{}, 0
		}
		cur, size = append(cur, id), size+n
	}
	parts = append(parts, cur)
	out := make([]ItemsMovedOut, len(parts))
	for i, p := range parts {
		out[i] = head
		out[i].ItemIDs = p
		if len(parts) > 1 {
			out[i].Part, out[i].Parts = i, len(parts)
		}
	}
	return out, nil
}

// splitMovedIn splits head, whose Items are items, into events of at most maxBytes,
// an item's versions continuing in the next part when they do not fit. It refuses
// (ErrShareTooLarge) once the versions exceed total bytes, or when one version alone
// cannot fit in an event.
func splitMovedIn(head ItemsMovedIn, items []MovedItem, maxBytes, total int) ([]ItemsMovedIn, error) {
	h := head
	h.Items, h.Part, h.Parts = []MovedItem{}, 99999, 99999
	hdr := encodedLen(h)
	budget := maxBytes - hdr - partHeadroom
	var parts [][]MovedItem
	cur, size, all := []MovedItem{}, 0, 0
	for _, it := range items {
		// {"id":N,"versions":[…]} and the comma before it.
		entry := len(`{"id":,"versions":[]},`) + len(strconv.FormatInt(int64(it.ID), 10))
		open := false // whether cur's last entry is it's
		for _, v := range it.Versions {
			n := estimateItem(&v)
			if all += n; all > total {
				return nil, fmt.Errorf("the moved history exceeds %d bytes (Limits.MaxShareBytes): %w", total, ErrShareTooLarge)
			}
			cost := n + 1
			if !open {
				cost += entry
			}
			if size+cost > budget && len(cur) > 0 {
				parts, cur, size, open = append(parts, cur), []MovedItem{}, 0, false
				cost = n + 1 + entry
			}
			if cost > budget {
				return nil, fmt.Errorf("version %d of item %d has %d bytes, more than one event can move: %w", v.Version, it.ID, n, ErrShareTooLarge)
			}
			if !open {
				cur, open = append(cur, MovedItem{ID: it.ID}), true
			}
			last := &cur[len(cur)-1]
			last.Versions = append(last.Versions, v)
			size += cost
		}
	}
	parts = append(parts, cur)
	out := make([]ItemsMovedIn, len(parts))
	for i, p := range parts {
		out[i] = head
		out[i].Items = p
		if len(parts) > 1 {
			out[i].Part, out[i].Parts = i, len(parts)
		}
	}
	return out, nil
}

// JoinMovedOut returns the one move the parts of an ItemsMovedOut record (all of
// them, in order): the first part with every part's ItemIDs, Part and Parts 0. It
// refuses parts that are not 0, 1, …, Parts-1 of one move.
func JoinMovedOut(parts []ItemsMovedOut) (ItemsMovedOut, error) {
	if err := checkParts(len(parts), func(i int) (int, int, string) {
		return parts[i].Part, parts[i].Parts, parts[i].RequestID
	}); err != nil {
		return ItemsMovedOut{}, fmt.Errorf("join ItemsMovedOut: %w", err)
	}
	out := parts[0]
	out.ItemIDs = []ItemID{}
	for _, p := range parts {
		out.ItemIDs = append(out.ItemIDs, p.ItemIDs...)
	}
	out.Part, out.Parts = 0, 0
	return out, nil
}

// JoinMovedIn returns the one move the parts of an ItemsMovedIn record (all of them,
// in order): the first part with every part's Items, an item continued from one part
// to the next joined into one, Part and Parts 0.
func JoinMovedIn(parts []ItemsMovedIn) (ItemsMovedIn, error) {
	if err := checkParts(len(parts), func(i int) (int, int, string) {
		return parts[i].Part, parts[i].Parts, parts[i].RequestID
	}); err != nil {
		return ItemsMovedIn{}, fmt.Errorf("join ItemsMovedIn: %w", err)
	}
	out := parts[0]
	out.Items = []MovedItem{}
	for _, p := range parts {
		for _, it := range p.Items {
			if n := len(out.Items); n > 0 && out.Items[n-1].ID == it.ID {
				out.Items[n-1].Versions = append(out.Items[n-1].Versions, it.Versions...)
				continue
			}
			out.Items = append(out.Items, MovedItem{ID: it.ID, Versions: slices.Clone(it.Versions)})
		}
	}
	out.Part, out.Parts = 0, 0
	return out, nil
}

// checkParts checks that n parts, read by at, are parts 0 to n-1 of one n-part move
// of one request (or the one part of an unsplit move).
func checkParts(n int, at func(int) (part, parts int, request string)) error {
	if n == 0 {
		return fmt.Errorf("no parts: %w", ErrInvalidCommand)
	}
	_, _, req := at(0)
	for i := range n {
		part, parts, r := at(i)
		if part != i || max(1, parts) != n || r != req {
			return fmt.Errorf("part %d of %d (request %q) found as part %d of %d: %w", i, n, req, part, parts, ErrInvalidCommand)
		}
	}
	return nil
}
