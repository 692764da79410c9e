package domain

import (
	"time"

	"github.com/google/uuid"
)

// Event is a fact recorded in a stream. Released event types are never edited: a change
// of shape is a new type name (for example "Committed.v2"). Every event carries the
// chain hash of its stream's previous event (see ChainHash), "" for the first.
type Event interface {
	// EventType is the versioned type name under which the event is stored.
	EventType() string
	// Prev returns the chain hash of the stream's previous event.
	Prev() string
}

// Stream names.

// WorkspaceStream names the stream of a workspace.
func WorkspaceStream(id uuid.UUID) string { return "workspace-" + id.String() }

// UserStream names the stream of a user (the user's account and devices).
func UserStream(id uuid.UUID) string { return "user-" + id.String() }

// --- workspace stream ---

// WorkspaceCreated opens a workspace stream. The owner is its first member.
type WorkspaceCreated struct {
	PrevHash    string    `json:"prevHash"`
	WorkspaceID uuid.UUID `json:"workspaceId"`
	Name        string    `json:"name"`
	OwnerID     uuid.UUID `json:"ownerId"`
	IsShared    bool      `json:"isShared"`
	IsEncrypted bool      `json:"isEncrypted"`
	At          time.Time `json:"at"`
}

// MemberAdded makes a user a member of a workspace.
type MemberAdded struct {
	PrevHash    string    `json:"prevHash"`
	WorkspaceID uuid.UUID `json:"workspaceId"`
	UserID      uuid.UUID `json:"userId"`
	// Name is the member's own name for the workspace (where it shows in their tree).
	Name string    `json:"name"`
	At   time.Time `json:"at"`
	// RequestID is the requestId of the share that added the member to a workspace
	// shared before (PROTOCOL.md §8 rule 2), so that a retry of it is recognised; empty
	// for members added with the workspace or by an operator.
	RequestID string `json:"requestId,omitempty"`
}

// MemberRemoved ends a user's membership. The owner cannot be removed.
type MemberRemoved struct {
	PrevHash    string    `json:"prevHash"`
	WorkspaceID uuid.UUID `json:"workspaceId"`
	UserID      uuid.UUID `json:"userId"`
	At          time.Time `json:"at"`
}

// MemberWorkspaceUpdated records updateWorkspace: a member's own name and mount point.
type MemberWorkspaceUpdated struct {
	PrevHash     string    `json:"prevHash"`
	WorkspaceID  uuid.UUID `json:"workspaceId"`
	UserID       uuid.UUID `json:"userId"`
	RequestID    string    `json:"requestId"`
	Name         string    `json:"name"`
	ParentItemID *ItemID   `json:"parentItemId"`
	At           time.Time `json:"at"`
}

// Committed records one processed commit request (accepted items or not) with every
// per-item outcome. Its WorkspaceVersion is the next of the workspace, gap-free from 1.
type Committed struct {
	PrevHash         string        `json:"prevHash"`
	WorkspaceID      uuid.UUID     `json:"workspaceId"`
	WorkspaceVersion int64         `json:"workspaceVersion"`
	RequestID        string        `json:"requestId"`
	UserID           uuid.UUID     `json:"userId"`
	DeviceID         uuid.UUID     `json:"deviceId"`
	CommittedAt      time.Time     `json:"committedAt"`
	Items            []ItemOutcome `json:"items"`
	// LimitQuota is the workspace owner's quota limit (0 = none); UsedQuota the owner's
	// bytes in use across all their workspaces after this commit, as far as the command knew.
	LimitQuota int64 `json:"limitQuota"`
	UsedQuota  int64 `json:"usedQuota"`
	// WorkspaceUsed is the size of this workspace's live items after this commit.
	WorkspaceUsed int64 `json:"workspaceUsed"`
}

// --- user stream ---

// UserCreated opens a user stream.
type UserCreated struct {
	PrevHash   string    `json:"prevHash"`
	UserID     uuid.UUID `json:"userId"`
	Name       string    `json:"name"`
	Email      string    `json:"email"`
	QuotaLimit int64     `json:"quotaLimit"` // bytes, 0 = no limit
	At         time.Time `json:"at"`
}

// UserQuotaChanged sets a user's quota limit.
type UserQuotaChanged struct {
	PrevHash   string    `json:"prevHash"`
	UserID     uuid.UUID `json:"userId"`
	QuotaLimit int64     `json:"quotaLimit"`
	At         time.Time `json:"at"`
}

// UserRemoved closes a user account; its devices are no longer valid.
type UserRemoved struct {
	PrevHash string    `json:"prevHash"`
	UserID   uuid.UUID `json:"userId"`
	At       time.Time `json:"at"`
}

// DeviceRegistered records updateDevice with a null deviceId.
type DeviceRegistered struct {
	PrevHash   string    `json:"prevHash"`
	UserID     uuid.UUID `json:"userId"`
	DeviceID   uuid.UUID `json:"deviceId"`
	RequestID  string    `json:"requestId"`
	Name       string    `json:"name"`
	OS         string    `json:"os"`
	IP         *string   `json:"ip"`
	AppVersion *string   `json:"appVersion"`
	At         time.Time `json:"at"`
}

// DeviceUpdated records updateDevice of a registered device.
type DeviceUpdated struct {
	PrevHash   string    `json:"prevHash"`
	UserID     uuid.UUID `json:"userId"`
	DeviceID   uuid.UUID `json:"deviceId"`
	RequestID  string    `json:"requestId"`
	Name       string    `json:"name"`
	OS         string    `json:"os"`
	IP         *string   `json:"ip"`
	AppVersion *string   `json:"appVersion"`
	At         time.Time `json:"at"`
}

// DeviceRemoved records the removal of a registered device (syncctl device remove).
type DeviceRemoved struct {
	PrevHash string    `json:"prevHash"`
	UserID   uuid.UUID `json:"userId"`
	DeviceID uuid.UUID `json:"deviceId"`
	At       time.Time `json:"at"`
}

// Released type names. Never change one; add a new name for a new shape.
const (
	TypeWorkspaceCreated       = "WorkspaceCreated.v1"
	TypeMemberAdded            = "MemberAdded.v1"
	TypeMemberRemoved          = "MemberRemoved.v1"
	TypeMemberWorkspaceUpdated = "MemberWorkspaceUpdated.v1"
	TypeCommitted              = "Committed.v1"
	TypeUserCreated            = "UserCreated.v1"
	TypeUserQuotaChanged       = "UserQuotaChanged.v1"
	TypeUserRemoved            = "UserRemoved.v1"
	TypeDeviceRegistered       = "DeviceRegistered.v1"
	TypeDeviceUpdated          = "DeviceUpdated.v1"
	TypeDeviceRemoved          = "DeviceRemoved.v1"
)

func (e WorkspaceCreated) EventType() string       { return TypeWorkspaceCreated }
func (e MemberAdded) EventType() string            { return TypeMemberAdded }
func (e MemberRemoved) EventType() string          { return TypeMemberRemoved }
func (e MemberWorkspaceUpdated) EventType() string { return TypeMemberWorkspaceUpdated }
func (e Committed) EventType() string              { return TypeCommitted }
func (e UserCreated) EventType() string            { return TypeUserCreated }
func (e UserQuotaChanged) EventType() string       { return TypeUserQuotaChanged }
func (e UserRemoved) EventType() string            { return TypeUserRemoved }
func (e DeviceRegistered) EventType() string       { return TypeDeviceRegistered }
func (e DeviceUpdated) EventType() string          { return TypeDeviceUpdated }
func (e DeviceRemoved) EventType() string          { return TypeDeviceRemoved }

func (e WorkspaceCreated) Prev() string       { return e.PrevHash }
func (e MemberAdded) Prev() string            { return e.PrevHash }
func (e MemberRemoved) Prev() string          { return e.PrevHash }
func (e MemberWorkspaceUpdated) Prev() string { return e.PrevHash }
func (e Committed) Prev() string              { return e.PrevHash }
func (e UserCreated) Prev() string            { return e.PrevHash }
func (e UserQuotaChanged) Prev() string       { return e.PrevHash }
func (e UserRemoved) Prev() string            { return e.PrevHash }
func (e DeviceRegistered) Prev() string       { return e.PrevHash }
func (e DeviceUpdated) Prev() string          { return e.PrevHash }
func (e DeviceRemoved) Prev() string          { return e.PrevHash }
