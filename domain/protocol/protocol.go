// Package protocol is the vocabulary of the sync protocol (docs/protocol.md): the
// requests the service accepts, the results it answers, and the error kinds a caller
// branches on (ErrInvalid … ErrResultTooLarge, BusyError). Every layer speaks it: the
// service decides and answers in it, the read models (projections) fill its results,
// transport/wire converts it to and from JSON and nothing else, and the device library
// transport/client hands it to programs. Having one set of these types, not a copy per
// layer, is what lets each layer point one way.
//
// It lives under domain, not under transport, because it is made of domain values only
// (ids, item metadata) and every layer may depend on the domain, while the service may
// not depend on the transport. Like the domain it imports only the standard library,
// google/uuid and the domain itself: no I/O, no clock, no store positions (results that
// carry a place in the event store, such as service.CommitResult, stay with the
// service), and no JSON: the wire shapes and error codes are transport/wire's.
package protocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// Account is getAccountInfo's result.
type Account struct {
	UserID     uuid.UUID
	Name       string
	Email      string
	QuotaLimit int64 // 0 = no limit
	QuotaUsed  int64
}

// WorkspaceInfo is one entry of getWorkspaces, as the calling member sees it.
type WorkspaceInfo struct {
	ID             uuid.UUID
	Name           string // the member's own name for it
	OwnerID        uuid.UUID
	IsShared       bool
	IsEncrypted    bool
	ParentItemID   *domain.ItemID // where the member mounts it
	LatestRevision int64          // the workspace's current workspaceVersion
}

// ChangesPage is getChangesSince's result (PROTOCOL.md §4): the changes of the versions
// (FromVersion, ToVersion], HasMore while ToVersion < WorkspaceVersion.
type ChangesPage struct {
	Items            []domain.ItemMetadata
	FromVersion      int64
	ToVersion        int64
	HasMore          bool
	WorkspaceVersion int64
	// MovedOut are the items that left the workspace by a share within the page's range
	// (PROTOCOL.md §8), with the workspace they moved to; they are not in Items.
	MovedOut []MovedOutItem
}

// MovedOutItem is one entry of a page's movedOut: an item that moved to WorkspaceID.
type MovedOutItem struct {
	ID          domain.ItemID
	WorkspaceID uuid.UUID
}

// UpdateDeviceRequest is updateDevice's request; DeviceID nil registers a new device.
type UpdateDeviceRequest struct {
	RequestID  string
	UserID     uuid.UUID
	DeviceID   *uuid.UUID
	Name       string
	OS         string
	IP         *string
	AppVersion *string
}

// CommitRequest is commit's request.
type CommitRequest struct {
	RequestID   string
	UserID      uuid.UUID
	WorkspaceID uuid.UUID
	DeviceID    uuid.UUID
	Items       []domain.ItemMetadata
}

// UpdateWorkspaceRequest is updateWorkspace's request.
type UpdateWorkspaceRequest struct {
	RequestID    string
	UserID       uuid.UUID
	WorkspaceID  uuid.UUID
	Name         string
	ParentItemID *domain.ItemID
}

// Error kinds of the protocol (PROTOCOL.md §4): transport/wire maps each to its wire
// error code and back. Anything else is Internal. Check with errors.Is.
var (
	ErrInvalid           = errors.New("invalid request")     // InvalidRequest
	ErrUnauthorized      = errors.New("unauthorized")        // Unauthorized
	ErrUserNotFound      = errors.New("user not found")      // UserNotFoundException
	ErrNoWorkspaces      = errors.New("no workspaces found") // NoWorkspacesFoundException
	ErrWorkspaceNotFound = errors.New("workspace not found") // WorkspaceNotFound
	ErrDeviceNotValid    = errors.New("device not valid")    // DeviceNotValidException
	ErrBusy              = errors.New("busy")                // Busy; see BusyError
	ErrResultTooLarge    = errors.New("result too large")    // ResultTooLarge: page with getChangesSince
)

// BusyError says the service is overloaded and nothing was done; retry after RetryAfter
// with the same requestId.
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string { return fmt.Sprintf("busy: retry after %v", e.RetryAfter) }

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }
