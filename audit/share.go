package audit

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Shares across streams (PROTOCOL.md §8): a share is recorded in two streams at once,
// ItemsMovedOut in the source workspace and ItemsMovedIn in the shared one. Verify
// checks that each half has its other half (same requestId, same folder, the same items
// in the same order), and ItemLife follows an item from one workspace into the next.

// BreakShare: a share's event in one workspace stream has no matching event in the
// other workspace's stream (half a move, or the halves name other items).
const BreakShare BreakKind = "share"

// maxMoveHops bounds how many shares ItemLife follows back and forth (a share cannot
// be nested, so an item moves at most once; the bound only stops a forged loop).
const maxMoveHops = 8

// shareMove is one half of a share as a stream recorded it.
type shareMove struct {
	streamVersion uint64
	typ           string
	requestID     string
	workspace     uuid.UUID // the stream's workspace
	partner       uuid.UUID // the other half's workspace
	folder        domain.ItemID
	items         []domain.ItemID
	// part and parts: which part of a split move this is (domain/share_parts.go); a
	// move joined by addMove has its last part's part.
	part, parts int
}

// addMove adds m, read after ms, to ms: a move's next part (same half, request and
// workspaces, part one more) is joined into the move before it (an item continued
// from one part to the next counted once); anything else is a move of its own, which
// the other half must then match alone.
func addMove(ms []shareMove, m shareMove) []shareMove {
	if n := len(ms); n > 0 && m.part > 0 {
		last := &ms[n-1]
		if last.typ == m.typ && last.requestID == m.requestID && last.workspace == m.workspace && last.partner == m.partner &&
			last.folder == m.folder && last.parts == m.parts && last.part+1 == m.part {
			items := m.items
			if len(items) > 0 && len(last.items) > 0 && last.items[len(last.items)-1] == items[0] && m.typ == domain.TypeItemsMovedIn {
				items = items[1:]
			}
			last.items = append(last.items, items...)
			last.part = m.part
			return ms
		}
	}
	return append(ms, m)
}

// moveOf returns the share half ev records, if it is one.
func moveOf(rec eventstore.RecordedEvent, ev domain.Event) (shareMove, bool) {
	switch e := ev.(type) {
	case domain.ItemsMovedOut:
		return shareMove{rec.StreamVersion, rec.Type, e.RequestID, e.WorkspaceID, e.ToWorkspaceID, e.FolderID,
			slices.Clone(e.ItemIDs), e.Part, e.PartCount()}, true
	case domain.ItemsMovedIn:
		ids := make([]domain.ItemID, len(e.Items))
		for i, it := range e.Items {
			ids[i] = it.ID
		}
		return shareMove{rec.StreamVersion, rec.Type, e.RequestID, e.WorkspaceID, e.FromWorkspaceID, e.FolderID, ids,
			e.Part, e.PartCount()}, true
	}
	return shareMove{}, false
}

// matches tells whether o is m's other half.
func (m shareMove) matches(o shareMove) bool {
	return m.typ != o.typ && m.requestID == o.requestID && m.workspace == o.partner && m.partner == o.workspace &&
		m.folder == o.folder && slices.Equal(m.items, o.items) && m.part+1 == m.parts && o.part+1 == o.parts
}

// otherType names the event type of m's other half.
func (m shareMove) otherType() string {
	if m.typ == domain.TypeItemsMovedOut {
		return domain.TypeItemsMovedIn
	}
	return domain.TypeItemsMovedOut
}

// checkShares checks the share halves of every stream of r that has no break yet
// against their other halves: in moves when the other stream was verified too, else
// read from the store (each stream at most once).
func (a *Auditor) checkShares(ctx context.Context, r *Report, moves map[string][]shareMove) error {
	for i := range r.Streams {
		sr := &r.Streams[i]
		if sr.Break != nil {
			continue
		}
		for _, m := range moves[sr.Stream] {
			other := domain.WorkspaceStream(m.partner)
			theirs, ok := moves[other]
			if !ok {
				var err error
				if theirs, err = a.movesOf(ctx, other); err != nil {
					return err
				}
				moves[other] = theirs
			}
			if slices.ContainsFunc(theirs, m.matches) {
				continue
			}
			sr.Break = &Break{Kind: BreakShare, StreamVersion: m.streamVersion, Type: m.typ,
				Expected: fmt.Sprintf("%s of request %q in %s, folder %d, items %v", m.otherType(), m.requestID, other, m.folder, m.items),
				Found:    fmt.Sprintf("%d share events there, none matching", len(theirs)),
				Detail:   "a share is recorded in both workspaces at once: one half is missing or names other items"}
			break
		}
	}
	return nil
}

// movesOf reads the share halves a workspace stream records (undecodable events are
// verify's to report, not this check's).
func (a *Auditor) movesOf(ctx context.Context, stream string) ([]shareMove, error) {
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("shares of %s: %w", stream, err)
	}
	out := []shareMove{}
	_, _, err = a.scan(ctx, stream, 1, tail, func(rec eventstore.RecordedEvent, ev domain.Event, decodeErr error) (bool, error) {
		if decodeErr == nil {
			if m, ok := moveOf(rec, ev); ok {
				out = addMove(out, m)
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("shares of %s: %w", stream, err)
	}
	return out, nil
}

// originOf returns the workspace where item's life began, following ItemsMovedIn back
// from ws: a shared workspace's ItemsMovedIn comes before its first commit, so only the
// stream's head is read.
func (a *Auditor) originOf(ctx context.Context, ws uuid.UUID, item domain.ItemID) (uuid.UUID, error) {
	for range maxMoveHops {
		from, found := uuid.Nil, false
		stream := domain.WorkspaceStream(ws)
		_, _, err := a.scan(ctx, stream, 1, 0, func(rec eventstore.RecordedEvent, ev domain.Event, decodeErr error) (bool, error) {
			if decodeErr != nil {
				return true, nil
			}
			switch e := ev.(type) {
			case domain.ItemsMovedIn:
				if slices.ContainsFunc(e.Items, func(it domain.MovedItem) bool { return it.ID == item }) {
					from, found = e.FromWorkspaceID, true
				}
				return found || e.Part+1 >= e.PartCount(), nil // a split move-in goes on in its next part
			case domain.Committed:
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			return uuid.Nil, fmt.Errorf("origin of item %d in %s: %w", item, stream, err)
		}
		if !found {
			return ws, nil
		}
		ws = from
	}
	return ws, nil
}

// moveRow is the row of ItemLife for a share event that moved item, if ev is one.
// last is the item's latest version so far; a move-in row carries the version the
// item arrived with.
func moveRow(row Entry, ev domain.Event, item domain.ItemID, last *domain.ItemMetadata) (Entry, uuid.UUID, bool) {
	row.ItemID = &item
	switch e := ev.(type) {
	case domain.ItemsMovedOut:
		if !slices.Contains(e.ItemIDs, item) {
			return Entry{}, uuid.Nil, false
		}
		row.Change = fmt.Sprintf("moved out to workspace %s (folder %d shared)", e.ToWorkspaceID, e.FolderID)
		return row, e.ToWorkspaceID, true
	case domain.ItemsMovedIn:
		for _, it := range e.Items {
			if it.ID == item && len(it.Versions) > 0 {
				m := it.Versions[len(it.Versions)-1]
				row.Version, row.Metadata = m.Version, &m
				row.Change = fmt.Sprintf("moved in from workspace %s with its %d versions", e.FromWorkspaceID, len(it.Versions))
				if e.PartCount() > 1 { // a history split over parts has a row per part
					row.Change = fmt.Sprintf("moved in from workspace %s with versions %d to %d%s", e.FromWorkspaceID,
						it.Versions[0].Version, m.Version, partText(e.Part, e.PartCount()))
				}
				if last != nil && !sameParent(last.ParentID, m.ParentID) {
					row.Change += fmt.Sprintf("; parent %s → %s", parentText(last.ParentID), parentText(m.ParentID))
				}
				return row, uuid.Nil, true
			}
		}
	}
	return Entry{}, uuid.Nil, false
}
