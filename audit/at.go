package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// AtQuery names a past moment of a workspace: a time or a workspaceVersion (exactly
// one of them).
type AtQuery struct {
	Workspace uuid.UUID
	// Time: the state after every event up to and including Time, that is, the longest
	// prefix of the history whose events all happened at or before Time.
	Time time.Time
	// Version: the state right after the commit with this workspaceVersion (0: before
	// any commit), lifecycle events up to the next commit included.
	Version *int64
}

// Validate reports a query that names no moment, or two.
func (q AtQuery) Validate() error {
	switch {
	case q.Workspace == uuid.Nil:
		return errors.New("at query: no workspace")
	case q.Time.IsZero() == (q.Version == nil):
		return errors.New("at query: give a time or a version, not both nor neither")
	case q.Version != nil && *q.Version < 0:
		return fmt.Errorf("at query: negative version %d", *q.Version)
	}
	return nil
}

// State is a workspace as it was at a past moment, rebuilt from history alone.
type State struct {
	Workspace uuid.UUID
	// WorkspaceVersion and StreamVersion are those of the last event folded;
	// Time is that event's time (zero if none).
	WorkspaceVersion int64
	StreamVersion    uint64
	Time             time.Time
	// Items is the latest version of every item then, deleted ones included, parents
	// before children: the shape of getChanges.
	Items []domain.ItemMetadata
}

// ErrBeyondHistory is returned when At asks for a version the workspace never reached.
var ErrBeyondHistory = errors.New("audit: version beyond the workspace's history")

// At rebuilds the state of q.Workspace at the moment q names by folding its history,
// page by page, into a fresh domain.Workspace, and stops at the first event after that
// moment.
func (a *Auditor) At(ctx context.Context, q AtQuery) (State, error) {
	if err := q.Validate(); err != nil {
		return State{}, err
	}
	stream := domain.WorkspaceStream(q.Workspace)
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return State{}, fmt.Errorf("at %s: %w", stream, err)
	}
	if tail == 0 {
		return State{}, fmt.Errorf("at %s: %w", stream, ErrNoWorkspace)
	}
	w := domain.NewWorkspace(q.Workspace)
	var last time.Time
	_, _, err = a.scan(ctx, stream, 1, tail, func(rec eventstore.RecordedEvent, ev domain.Event, err error) (bool, error) {
		ev, err = decoded(rec, ev, err)
		if err != nil {
			return false, err
		}
		t := eventTime(ev)
		if q.Version != nil {
			if v, ok := workspaceVersionOf(ev); ok && v > *q.Version {
				return true, nil
			}
		} else if t.After(q.Time) {
			return true, nil
		}
		w.Evolve(ev)
		last = t
		return false, nil
	})
	if err != nil {
		return State{}, fmt.Errorf("at %s: %w", stream, err)
	}
	if q.Version != nil && w.Version() < *q.Version {
		return State{}, fmt.Errorf("at %s version %d: workspace is at version %d: %w", stream, *q.Version, w.Version(), ErrBeyondHistory)
	}
	return State{
		Workspace:        q.Workspace,
		WorkspaceVersion: w.Version(),
		StreamVersion:    w.StreamVersion(),
		Time:             last,
		Items:            w.Items(),
	}, nil
}

// eventTime is the time an event of a workspace stream happened.
func eventTime(ev domain.Event) time.Time {
	switch e := ev.(type) {
	case domain.Committed:
		return e.CommittedAt
	case domain.WorkspaceCreated:
		return e.At
	case domain.MemberAdded:
		return e.At
	case domain.MemberRemoved:
		return e.At
	case domain.MemberWorkspaceUpdated:
		return e.At
	case domain.UserCreated:
		return e.At
	case domain.UserQuotaChanged:
		return e.At
	case domain.UserRemoved:
		return e.At
	case domain.DeviceRegistered:
		return e.At
	case domain.DeviceUpdated:
		return e.At
	case domain.DeviceRemoved:
		return e.At
	case domain.ItemsMovedOut:
		return e.At
	case domain.ItemsMovedIn:
		return e.At
	}
	return time.Time{}
}
