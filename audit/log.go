package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// LogQuery selects the rows of a workspace's history. Zero fields select everything.
type LogQuery struct {
	Workspace uuid.UUID
	// Item keeps only outcomes concerning that item (lifecycle rows are dropped).
	Item *domain.ItemID
	// User keeps commits by that user and lifecycle events concerning that member.
	User *uuid.UUID
	// Device keeps commits from that device (lifecycle rows are dropped).
	Device *uuid.UUID
	// Since and Until bound the event time: Since <= t < Until (zero = unbounded).
	Since, Until time.Time
	// FromVersion and ToVersion bound the workspaceVersion, both inclusive (0 =
	// unbounded). Lifecycle events count with the version of the commit before them.
	FromVersion, ToVersion int64
	// Follow keeps polling the stream's tail for new events after the end of the
	// history, until ctx ends (Log then returns nil) or ToVersion is passed.
	Follow bool
}

// Validate reports a query that can select nothing by construction.
func (q LogQuery) Validate() error {
	switch {
	case q.Workspace == uuid.Nil:
		return errors.New("log query: no workspace")
	case q.FromVersion < 0 || q.ToVersion < 0:
		return fmt.Errorf("log query: negative version bound (%d, %d)", q.FromVersion, q.ToVersion)
	case q.ToVersion != 0 && q.FromVersion > q.ToVersion:
		return fmt.Errorf("log query: from version %d after to version %d", q.FromVersion, q.ToVersion)
	case !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until):
		return fmt.Errorf("log query: since %s not before until %s", formatTime(q.Since), formatTime(q.Until))
	}
	return nil
}

func (q LogQuery) keepEvent(e *Entry) bool {
	if q.User != nil && e.UserID != *q.User {
		return false
	}
	if q.Device != nil && (e.DeviceID == nil || *e.DeviceID != *q.Device) {
		return false
	}
	if !q.Since.IsZero() && e.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	if q.FromVersion != 0 && e.WorkspaceVersion < q.FromVersion {
		return false
	}
	if q.ToVersion != 0 && e.WorkspaceVersion > q.ToVersion {
		return false
	}
	return true
}

func (q LogQuery) keepRow(e *Entry) bool {
	return q.Item == nil || (e.ItemID != nil && *e.ItemID == *q.Item)
}

// Log writes the history of q.Workspace to out, oldest first, one row per item outcome
// of each commit (rejected ones with their reason) and one per lifecycle event. It reads
// in pages; with a FromVersion it first finds the place to start by binary search.
func (a *Auditor) Log(ctx context.Context, q LogQuery, out EntrySink) error {
	if err := q.Validate(); err != nil {
		return err
	}
	stream := domain.WorkspaceStream(q.Workspace)
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return fmt.Errorf("log %s: %w", stream, err)
	}
	if tail == 0 && !q.Follow {
		return fmt.Errorf("log %s: %w", stream, ErrNoWorkspace)
	}
	from, carry := uint64(1), int64(0)
	if q.FromVersion > 1 && tail > 0 {
		from, err = a.seekVersion(ctx, stream, tail, q.FromVersion)
		if err != nil {
			return fmt.Errorf("log %s: %w", stream, err)
		}
		carry = q.FromVersion - 1
		a.log.Debug("seek", "stream", stream, "fromVersion", q.FromVersion, "streamVersion", from)
	}
	visit := func(rec eventstore.RecordedEvent, ev domain.Event, err error) (bool, error) {
		ev, err = decoded(rec, ev, err)
		if err != nil {
			return false, err
		}
		rows := entries(rec, ev, q.Workspace, carry)
		if v, ok := workspaceVersionOf(ev); ok {
			carry = v
			if q.ToVersion != 0 && v > q.ToVersion {
				return true, nil // versions only grow: nothing later can match
			}
		}
		if !q.keepEvent(&rows[0]) {
			return false, nil
		}
		for i := range rows {
			if q.keepRow(&rows[i]) {
				if err := out.Write(rows[i]); err != nil {
					return false, fmt.Errorf("log %s@%d: %w", stream, rec.StreamVersion, err)
				}
			}
		}
		return false, nil
	}
	for {
		next, stopped, err := a.scan(ctx, stream, from, tail, visit)
		if err != nil {
			if q.Follow && ctx.Err() != nil {
				return out.Flush() // following ends when ctx does
			}
			return err
		}
		if err := out.Flush(); err != nil {
			return fmt.Errorf("log %s: %w", stream, err)
		}
		if stopped || !q.Follow {
			return nil
		}
		from = next
		t := time.NewTimer(a.cfg.FollowInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if tail < next-1 {
			tail = next - 1
		}
	}
}

// seekVersion returns the stream version of the first Committed event whose
// workspaceVersion is at least want (tail+1 if none), by binary search over the stream:
// workspace versions grow with stream versions.
func (a *Auditor) seekVersion(ctx context.Context, stream string, tail uint64, want int64) (uint64, error) {
	best := tail + 1
	lo, hi := uint64(1), tail+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		v, at, err := a.firstCommitFrom(ctx, stream, mid)
		if err != nil {
			return 0, err
		}
		if v >= want {
			best = min(best, at)
			hi = mid
		} else {
			lo = at + 1
		}
	}
	return best, nil
}

// firstCommitFrom returns the workspaceVersion and stream version of the first Committed
// event at or after from (MaxInt64 and one past the end if there is none).
func (a *Auditor) firstCommitFrom(ctx context.Context, stream string, from uint64) (int64, uint64, error) {
	const probe = 16
	for {
		page, err := a.r.ReadStream(ctx, stream, from, probe)
		if err != nil {
			return 0, 0, fmt.Errorf("read %s from %d: %w", stream, from, err)
		}
		for _, rec := range page {
			if rec.Type != domain.TypeCommitted {
				continue
			}
			ev, err := decode(rec)
			if err != nil {
				return 0, 0, err
			}
			return ev.(domain.Committed).WorkspaceVersion, rec.StreamVersion, nil
		}
		if len(page) < probe {
			end := from
			if len(page) > 0 {
				end = page[len(page)-1].StreamVersion + 1
			}
			return math.MaxInt64, end, nil
		}
		from = page[len(page)-1].StreamVersion + 1
	}
}

// ItemLife writes the whole life of one item of workspace ws to out, oldest first:
// every version stored (creation, changes, renames, moves, deletes, revivals, each
// with what it changed), every duplicate re-send and every rejected attempt the server
// could attribute to the item, each with its user, device and time; plus the lifecycle
// events that mount the workspace at the item. The life crosses shares (PROTOCOL.md
// §8): it starts in the workspace the item was created in, even when ws is the shared
// workspace it moved to, shows the move out and the move in, and goes on in the new
// workspace (each row names its workspace).
func (a *Auditor) ItemLife(ctx context.Context, ws uuid.UUID, item domain.ItemID, out EntrySink) error {
	start, err := a.originOf(ctx, ws, item)
	if err != nil {
		return err
	}
	life := &itemLife{item: item, out: out}
	for hop := 0; start != uuid.Nil && hop <= maxMoveHops; hop++ {
		if start, err = a.itemLifeIn(ctx, start, life); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("item %d of %s: %w", item, domain.WorkspaceStream(ws), err)
	}
	if !life.found {
		return fmt.Errorf("item %d of %s: %w", item, domain.WorkspaceStream(ws), ErrNoItem)
	}
	return nil
}

// itemLife is the state of ItemLife across workspaces.
type itemLife struct {
	item  domain.ItemID
	out   EntrySink
	last  *domain.ItemMetadata // the latest stored version so far
	found bool
}

// itemLifeIn writes the item's rows of workspace ws and returns the workspace the item
// moved out to, or uuid.Nil if it stays in ws.
func (a *Auditor) itemLifeIn(ctx context.Context, ws uuid.UUID, l *itemLife) (next uuid.UUID, err error) {
	item := l.item
	stream := domain.WorkspaceStream(ws)
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return uuid.Nil, fmt.Errorf("item %d of %s: %w", item, stream, err)
	}
	if tail == 0 {
		return uuid.Nil, fmt.Errorf("item %d of %s: %w", item, stream, ErrNoWorkspace)
	}
	var carry int64
	_, _, err = a.scan(ctx, stream, 1, tail, func(rec eventstore.RecordedEvent, ev domain.Event, err error) (bool, error) {
		ev, err = decoded(rec, ev, err)
		if err != nil {
			return false, err
		}
		rows := entries(rec, ev, ws, carry)
		if v, ok := workspaceVersionOf(ev); ok {
			carry = v
		}
		switch e := ev.(type) {
		case domain.Committed:
			// its rows follow
		case domain.MemberWorkspaceUpdated:
			if e.ParentItemID != nil && *e.ParentItemID == item {
				rows[0].ItemID = &item
				l.found = true
				return false, l.out.Write(rows[0])
			}
			return false, nil
		case domain.ItemsMovedOut, domain.ItemsMovedIn:
			row, to, ok := moveRow(rows[0], ev, item, l.last)
			if !ok {
				return false, nil
			}
			l.found = true
			if row.Metadata != nil {
				m := row.Metadata.Clone()
				l.last = &m
			}
			next = to
			return to != uuid.Nil, l.out.Write(row)
		default:
			return false, nil
		}
		for _, r := range rows {
			if r.ItemID == nil || *r.ItemID != item {
				continue
			}
			l.found = true
			if r.Outcome == OutcomeStored {
				r.Change = describeChange(l.last, r.Metadata)
				m := r.Metadata.Clone()
				l.last = &m
			}
			if err := l.out.Write(r); err != nil {
				return false, fmt.Errorf("item %d of %s@%d: %w", item, stream, rec.StreamVersion, err)
			}
		}
		return false, nil
	})
	if err != nil {
		return uuid.Nil, err
	}
	return next, nil
}

// ErrNoItem is returned when a workspace's history never mentions an item.
var ErrNoItem = errors.New("audit: item not in the workspace's history")
