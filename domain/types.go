package domain

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// ItemID is a server-assigned item id: positive, below 2^53, unique across workspaces.
type ItemID int64

// MaxItemID bounds item ids (exact in every JSON reader).
const MaxItemID ItemID = 1<<53 - 1

// Status is an item version's status.
type Status string

// The statuses of PROTOCOL.md §3.
const (
	StatusNew     Status = "NEW"
	StatusChanged Status = "CHANGED"
	StatusRenamed Status = "RENAMED"
	StatusMoved   Status = "MOVED"
	StatusDeleted Status = "DELETED"
)

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusNew, StatusChanged, StatusRenamed, StatusMoved, StatusDeleted:
		return true
	}
	return false
}

// ItemMetadata describes one version of an item (PROTOCOL.md §3). Nullable fields are
// pointers. In events it is stored exactly as accepted.
type ItemMetadata struct {
	ID            *ItemID   `json:"id"`
	TempID        *int64    `json:"tempId"`
	Version       int64     `json:"version"`
	DeviceID      uuid.UUID `json:"deviceId"`
	WorkspaceID   uuid.UUID `json:"workspaceId"`
	ParentID      *ItemID   `json:"parentId"`
	ParentVersion *int64    `json:"parentVersion"`
	Status        Status    `json:"status"`
	ModifiedAt    time.Time `json:"modifiedAt"`
	Checksum      int64     `json:"checksum"`
	Chunks        []string  `json:"chunks"`
	Size          int64     `json:"size"`
	IsFolder      bool      `json:"isFolder"`
	Filename      string    `json:"filename"`
	Mimetype      string    `json:"mimetype"`
}

// Clone returns a deep copy of m.
func (m ItemMetadata) Clone() ItemMetadata {
	c := m
	c.ID = clonePtr(m.ID)
	c.TempID = clonePtr(m.TempID)
	c.ParentID = clonePtr(m.ParentID)
	c.ParentVersion = clonePtr(m.ParentVersion)
	if m.Chunks != nil {
		c.Chunks = slices.Clone(m.Chunks)
	}
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Reason is why one item of a commit failed (PROTOCOL.md §3, CommitInfo.reason).
type Reason string

// Failure reasons. The empty Reason means success.
const (
	ReasonWrongVersion    Reason = "wrongVersion"
	ReasonParentNotFound  Reason = "parentNotFound"
	ReasonParentNotFolder Reason = "parentNotFolder"
	ReasonCycle           Reason = "cycle"
	ReasonInvalidName     Reason = "invalidName"
	ReasonNameTaken       Reason = "nameTaken"
	ReasonImmutableField  Reason = "immutableField"
	ReasonQuotaExceeded   Reason = "quotaExceeded"
	ReasonInvalidItem     Reason = "invalidItem"
)

// ItemOutcome is the result for one item of a commit request, in request order.
type ItemOutcome struct {
	// CommittedVersion is the version the device sent.
	CommittedVersion int64 `json:"committedVersion"`
	Succeeded        bool  `json:"commitSucceed"`
	// Stored is true when this item's version was newly stored by this commit (false for
	// a duplicate re-send and for a failure).
	Stored bool `json:"stored"`
	// Metadata: on success the committed (or duplicate's stored) version with its id; on
	// failure the server's current version, or nil if the item does not exist.
	Metadata *ItemMetadata `json:"metadata"`
	Reason   Reason        `json:"reason,omitempty"`
}
