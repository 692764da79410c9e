// Package service is the application layer between the wire and the domain: it loads
// aggregate state (a bounded cache plus a catch-up read of the stream tail), asks the
// domain to decide, appends the decision with the expected stream version, retries on a
// concurrent append, and answers queries from the read models. It knows nothing of
// AMQP or JSON wire shapes; transport calls it.
package service

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
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

// ChangesPage is getChangesSince's result (PROTOCOL.md §4).
type ChangesPage struct {
	Items            []domain.ItemMetadata
	FromVersion      int64
	ToVersion        int64
	HasMore          bool
	WorkspaceVersion int64
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

// CommitResult is the outcome of a commit: the recorded event, and whether it is the
// original record of an earlier copy of the same request (nothing new was appended).
type CommitResult struct {
	EventID  uuid.UUID // id of the stored event (the notifyCommit envelope's id)
	Event    domain.Committed
	Position eventstore.Position // the event's place in the store's global order
	Replayed bool
}

// DeviceResult is updateDevice's outcome: the device id and the place of the event
// that recorded the registration or update in the store's global order.
type DeviceResult struct {
	ID       uuid.UUID
	Position eventstore.Position
}

// UpdateWorkspaceRequest is updateWorkspace's request.
type UpdateWorkspaceRequest struct {
	RequestID    string
	UserID       uuid.UUID
	WorkspaceID  uuid.UUID
	Name         string
	ParentItemID *domain.ItemID
}

// Errors the transport maps to wire error codes (PROTOCOL.md §4). Anything else is
// Internal. Check with errors.Is.
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
