package domain

import (
	"errors"
	"time"

	"github.com/google/uuid"
)

// Commands carry everything a decision needs that is not in the state: the time, the new
// ids, the owner's quota figures from outside this stream, and the chain hash of the
// stream's last stored event (PrevHash, "" for an empty stream), which the decided event
// carries.

// WorkspaceCommand is a command for the workspace aggregate.
type WorkspaceCommand interface{ workspaceCommand() }

// UserCommand is a command for the user aggregate.
type UserCommand interface{ userCommand() }

// CreateWorkspace opens a workspace owned by OwnerID, who becomes its first member.
type CreateWorkspace struct {
	WorkspaceID uuid.UUID
	Name        string
	OwnerID     uuid.UUID
	IsShared    bool
	IsEncrypted bool
	At          time.Time
	PrevHash    string
}

// AddMember makes UserID a member of the workspace; Name is the member's own name for it.
type AddMember struct {
	WorkspaceID uuid.UUID
	UserID      uuid.UUID
	Name        string
	At          time.Time
	PrevHash    string
}

// RemoveMember ends UserID's membership (never the owner's).
type RemoveMember struct {
	WorkspaceID uuid.UUID
	UserID      uuid.UUID
	At          time.Time
	PrevHash    string
}

// UpdateMemberWorkspace is updateWorkspace: the caller's own name and mount point.
type UpdateMemberWorkspace struct {
	RequestID    string
	WorkspaceID  uuid.UUID
	UserID       uuid.UUID
	Name         string
	ParentItemID *ItemID
	At           time.Time
	PrevHash     string
}

// Commit is the commit request of PROTOCOL.md §5.
type Commit struct {
	RequestID   string
	WorkspaceID uuid.UUID
	UserID      uuid.UUID
	DeviceID    uuid.UUID
	Items       []ItemMetadata
	At          time.Time
	// NewItemIDs are fresh, never used item ids, handed out in order to the items this
	// commit creates. The caller provides at least one per item whose ID is nil.
	NewItemIDs []ItemID
	// QuotaLimit is the workspace owner's limit (0 = none); OwnerUsedElsewhere the owner's
	// bytes in use in their other workspaces.
	QuotaLimit         int64
	OwnerUsedElsewhere int64
	// Limits are the server's limits (zero fields: the defaults).
	Limits   Limits
	PrevHash string
}

// CreateUser opens a user account.
type CreateUser struct {
	UserID     uuid.UUID
	Name       string
	Email      string
	QuotaLimit int64
	At         time.Time
	PrevHash   string
}

// SetQuota changes a user's quota limit (0 = none).
type SetQuota struct {
	UserID     uuid.UUID
	QuotaLimit int64
	At         time.Time
	PrevHash   string
}

// RemoveUser closes a user account.
type RemoveUser struct {
	UserID   uuid.UUID
	At       time.Time
	PrevHash string
}

// RegisterDevice is updateDevice with a null deviceId. DeviceID is the fresh id to give
// the device; a repeated RequestID yields the first registration instead. A user
// holds at most Limits.MaxDevicesPerUser devices (zero: the default).
type RegisterDevice struct {
	RequestID  string
	UserID     uuid.UUID
	DeviceID   uuid.UUID
	Name       string
	OS         string
	IP         *string
	AppVersion *string
	Limits     Limits
	At         time.Time
	PrevHash   string
}

// RemoveDevice unregisters one of the user's devices, freeing its slot; the device's
// later requests are refused as those of an unknown device.
type RemoveDevice struct {
	UserID   uuid.UUID
	DeviceID uuid.UUID
	At       time.Time
	PrevHash string
}

// UpdateDevice is updateDevice of a registered device of the user.
type UpdateDevice struct {
	RequestID  string
	UserID     uuid.UUID
	DeviceID   uuid.UUID
	Name       string
	OS         string
	IP         *string
	AppVersion *string
	At         time.Time
	PrevHash   string
}

func (CreateWorkspace) workspaceCommand()       {}
func (AddMember) workspaceCommand()             {}
func (RemoveMember) workspaceCommand()          {}
func (UpdateMemberWorkspace) workspaceCommand() {}
func (Commit) workspaceCommand()                {}
func (CreateUser) userCommand()                 {}
func (SetQuota) userCommand()                   {}
func (RemoveUser) userCommand()                 {}
func (RegisterDevice) userCommand()             {}
func (UpdateDevice) userCommand()               {}
func (RemoveDevice) userCommand()               {}

// Decision is what Decide returns: the events to append, in order, or, when the command
// repeats a request already recorded (same RequestID), no events and ReplayOf = the
// stream version of the event that recorded it.
type Decision struct {
	Events   []Event
	ReplayOf uint64
}

// Request-level errors of Decide. A command that fails with one of these changes nothing
// and records nothing. Check with errors.Is.
var (
	ErrInvalidCommand   = errors.New("invalid command")    // a field missing or out of range
	ErrNotFound         = errors.New("not found")          // no such workspace or user
	ErrAlreadyExists    = errors.New("already exists")     // create of an existing aggregate
	ErrNotMember        = errors.New("not a member")       // caller is not a member of the workspace
	ErrAlreadyMember    = errors.New("already a member")   // AddMember of a member
	ErrOwnerIsMember    = errors.New("owner cannot leave") // RemoveMember of the owner
	ErrDeviceNotValid   = errors.New("device not valid")   // device unknown or not the user's
	ErrUserRemoved      = errors.New("user removed")       // command for a removed user
	ErrItemNotInHistory = errors.New("item not found")     // UpdateMemberWorkspace with an unknown parent item
)
