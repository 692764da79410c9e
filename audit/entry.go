package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Outcome is what happened to one item of a commit request.
type Outcome string

// Outcomes of an item of a commit.
const (
	// OutcomeStored: the item's version was newly stored by this commit.
	OutcomeStored Outcome = "stored"
	// OutcomeDuplicate: the request re-sent a version already stored; nothing changed.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeRejected: the item failed (see Reason); nothing changed.
	OutcomeRejected Outcome = "rejected"
)

// Entry is one row of a history: one item outcome of a Committed event, or one
// lifecycle event (workspace created, member added or removed, a member's own name or
// mount point updated). Lifecycle rows have no DeviceID, ItemID or Outcome.
type Entry struct {
	WorkspaceID   uuid.UUID `json:"workspaceId"`
	StreamVersion uint64    `json:"streamVersion"`
	// WorkspaceVersion is the commit's workspaceVersion; for a lifecycle event, the
	// workspace's version when it happened (the last commit's, 0 before any).
	WorkspaceVersion int64     `json:"workspaceVersion"`
	Time             time.Time `json:"time"`
	// Type is the stored event type name, e.g. "Committed.v1".
	Type      string `json:"type"`
	RequestID string `json:"requestId,omitempty"`
	// UserID is who committed; for a lifecycle event, the member it concerns (the
	// owner for WorkspaceCreated).
	UserID   uuid.UUID  `json:"userId"`
	DeviceID *uuid.UUID `json:"deviceId,omitempty"`
	// Index is the item's position in its commit request (0-based).
	Index int `json:"index,omitempty"`
	// ItemID is the item the outcome concerns; nil for a rejected item the server did
	// not know (no metadata recorded).
	ItemID *domain.ItemID `json:"itemId,omitempty"`
	// Version is the version the device sent (CommittedVersion).
	Version int64         `json:"version,omitempty"`
	Outcome Outcome       `json:"outcome,omitempty"`
	Reason  domain.Reason `json:"reason,omitempty"`
	// Change describes, in the life of one item, what this version changed.
	Change string `json:"change,omitempty"`
	// Detail describes a lifecycle event.
	Detail string `json:"detail,omitempty"`
	// Metadata is the outcome's metadata: the stored version on success, the server's
	// current version on a rejection (nil if the item did not exist).
	Metadata *domain.ItemMetadata `json:"metadata,omitempty"`
}

// entries turns one decoded workspace event into its rows. carry is the workspace
// version before the event.
func entries(rec eventstore.RecordedEvent, ev domain.Event, ws uuid.UUID, carry int64) []Entry {
	base := Entry{WorkspaceID: ws, StreamVersion: rec.StreamVersion, WorkspaceVersion: carry, Type: rec.Type}
	switch e := ev.(type) {
	case domain.Committed:
		base.WorkspaceVersion = e.WorkspaceVersion
		base.Time = e.CommittedAt.UTC()
		base.RequestID = e.RequestID
		base.UserID = e.UserID
		dev := e.DeviceID
		base.DeviceID = &dev
		if len(e.Items) == 0 {
			base.Detail = "commit with no items"
			return []Entry{base}
		}
		out := make([]Entry, len(e.Items))
		for i, o := range e.Items {
			r := base
			r.Index = i
			r.Version = o.CommittedVersion
			r.Metadata = o.Metadata
			if o.Metadata != nil && o.Metadata.ID != nil {
				id := *o.Metadata.ID
				r.ItemID = &id
			}
			switch {
			case !o.Succeeded:
				r.Outcome, r.Reason = OutcomeRejected, o.Reason
			case o.Stored:
				r.Outcome = OutcomeStored
			default:
				r.Outcome = OutcomeDuplicate
			}
			out[i] = r
		}
		return out
	case domain.WorkspaceCreated:
		base.Time = e.At.UTC()
		base.UserID = e.OwnerID
		base.Detail = fmt.Sprintf("workspace %q created by its owner (shared=%t, encrypted=%t)", e.Name, e.IsShared, e.IsEncrypted)
	case domain.MemberAdded:
		base.Time = e.At.UTC()
		base.UserID = e.UserID
		base.Detail = fmt.Sprintf("member added, naming the workspace %q", e.Name)
	case domain.MemberRemoved:
		base.Time = e.At.UTC()
		base.UserID = e.UserID
		base.Detail = "member removed"
	case domain.MemberWorkspaceUpdated:
		base.Time = e.At.UTC()
		base.UserID = e.UserID
		base.RequestID = e.RequestID
		base.Detail = fmt.Sprintf("member renamed the workspace to %q, mounted at %s", e.Name, parentText(e.ParentItemID))
	case domain.ItemsMovedOut:
		base.WorkspaceVersion, base.Time, base.RequestID, base.UserID = e.WorkspaceVersion, e.At.UTC(), e.RequestID, e.UserID
		base.Detail = fmt.Sprintf("shared: %d items below folder %d moved to workspace %s%s", len(e.ItemIDs), e.FolderID, e.ToWorkspaceID,
			partText(e.Part, e.PartCount()))
	case domain.ItemsMovedIn:
		base.WorkspaceVersion, base.Time, base.RequestID, base.UserID = e.WorkspaceVersion, e.At.UTC(), e.RequestID, e.UserID
		base.Detail = fmt.Sprintf("shared: %d items moved in from folder %d of workspace %s%s", len(e.Items), e.FolderID, e.FromWorkspaceID,
			partText(e.Part, e.PartCount()))
	default:
		base.Detail = "event of another stream kind: " + ev.EventType()
	}
	return []Entry{base}
}

// partText names the part of a split share move ("" for a move in one event).
func partText(part, parts int) string {
	if parts <= 1 {
		return ""
	}
	return fmt.Sprintf(" (part %d of %d)", part+1, parts)
}

func parentText(p *domain.ItemID) string {
	if p == nil {
		return "root"
	}
	return "item " + strconv.FormatInt(int64(*p), 10)
}

// describeChange says what version m changed relative to prev (nil: the first version).
func describeChange(prev, m *domain.ItemMetadata) string {
	kind := "file"
	if m.IsFolder {
		kind = "folder"
	}
	if prev == nil {
		return fmt.Sprintf("created %s %q in %s", kind, m.Filename, parentText(m.ParentID))
	}
	var parts []string
	if prev.Status == domain.StatusDeleted && m.Status != domain.StatusDeleted {
		parts = append(parts, "revived")
	}
	if m.Status == domain.StatusDeleted && prev.Status != domain.StatusDeleted {
		parts = append(parts, "deleted")
	}
	if prev.Filename != m.Filename {
		parts = append(parts, fmt.Sprintf("renamed %q → %q", prev.Filename, m.Filename))
	}
	if !sameParent(prev.ParentID, m.ParentID) {
		parts = append(parts, fmt.Sprintf("moved %s → %s", parentText(prev.ParentID), parentText(m.ParentID)))
	}
	if m.Status != domain.StatusDeleted && (prev.Checksum != m.Checksum || prev.Size != m.Size || !sameChunks(prev.Chunks, m.Chunks)) {
		parts = append(parts, fmt.Sprintf("content changed (size %d → %d)", prev.Size, m.Size))
	}
	if len(parts) == 0 {
		return "new version, " + strings.ToLower(string(m.Status)) + ", nothing else changed"
	}
	return strings.Join(parts, "; ")
}

func sameParent(a, b *domain.ItemID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameChunks(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
