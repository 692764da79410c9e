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
// events that mount the workspace at the item.
func (a *Auditor) ItemLife(ctx context.Context, ws uuid.UUID, item domain.ItemID, out EntrySink) error {
	stream := domain.WorkspaceStream(ws)
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return fmt.Errorf("item %d of %s: %w", item, stream, err)
	}
	if tail == 0 {
		return fmt.Errorf("item %d of %s: %w", item, stream, ErrNoWorkspace)
	}
	var last *domain.ItemMetadata
	var carry int64
	found := false
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
				found = true
				return false, out.Write(rows[0])
			}
			return false, nil
		default:
			return false, nil
		}
		for _, r := range rows {
			if r.ItemID == nil || *r.ItemID != item {
				continue
			}
			found = true
			if r.Outcome == OutcomeStored {
				r.Change = describeChange(last, r.Metadata)
				m := r.Metadata.Clone()
				last = &m
			}
			if err := out.Write(r); err != nil {
				return false, fmt.Errorf("item %d of %s@%d: %w", item, stream, rec.StreamVersion, err)
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("item %d of %s: %w", item, stream, err)
	}
	if !found {
		return fmt.Errorf("item %d of %s: %w", item, stream, ErrNoItem)
	}
	return nil
}

// ErrNoItem is returned when a workspace's history never mentions an item.
var ErrNoItem = errors.New("audit: item not in the workspace's history")
