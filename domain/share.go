package domain

import (
	"errors"
	"time"

	"github.com/google/uuid"
)

// ShareFolder is createShareProposal (PROTOCOL.md §8) once the service has resolved the
// e-mails to users: share folder FolderID of the caller's personal workspace SourceID.
type ShareFolder struct {
	RequestID string
	// UserID is the caller, who must own SourceID, a workspace that is not shared.
	UserID   uuid.UUID
	SourceID uuid.UUID
	FolderID ItemID
	// Members are the users to add. The caller's own id and repeats are skipped; if none
	// is left the share fails with ErrNoMembers. Users already members of the shared
	// workspace are left out of the decided events.
	Members     []uuid.UUID
	IsEncrypted bool
	// MountPoints are the items of SourceID where the caller mounts other workspaces
	// as their member (updateWorkspace's parentItemId, known to the service's read
	// model): sharing one of them, or a folder holding one, is nested sharing.
	MountPoints []ItemID
	At          time.Time
	// QuotaLimit and UsedQuota are the owner's figures, carried to the notifications (a
	// share moves bytes between two workspaces of the same owner: quota is unchanged).
	QuotaLimit, UsedQuota int64
	// Limits are the server's limits (zero fields: the defaults); MaxEventBytes bounds
	// each decided event.
	Limits Limits
	// SourcePrevHash and TargetPrevHash are the chain hashes of the last stored events of
	// SourceID's stream and of the target's ("" for a stream with no events).
	SourcePrevHash, TargetPrevHash string
}

// ShareDecision is what DecideShare returns. Source and Target are the events to append
// to the source and target workspaces' streams, together (an atomic multi-stream
// append); Source is empty when the folder is already shared (only members are added),
// and both are empty when there is nothing to add. ReplayOf, when not 0, is the source
// stream version of the ItemsMovedOut that recorded the same requestId: nothing is to
// be appended, and TargetID is the workspace it created.
type ShareDecision struct {
	TargetID   uuid.UUID
	Source     []Event
	Target     []Event
	NewMembers []uuid.UUID
	ReplayOf   uint64
	// ReplayMembers, for a repeated requestId of a share that added members to a
	// workspace shared before, are those members (in the order of their MemberAdded
	// events); nothing is to be appended.
	ReplayMembers []Member
}

// ErrNoMembers refuses a share whose members, once the caller's own id is skipped, are
// none (the wire's UserNotFoundException).
var ErrNoMembers = errors.New("no member to share with")

// shareSpace namespaces the ids of shared workspaces derived from share requests.
var shareSpace = uuid.MustParse("2b0f7c1e-5d4a-4e8b-9c3f-7a6d1e0b5c24")

// SharedWorkspaceID is the id of the workspace a share request creates: derived from the
// caller and the requestId, so a retried request names the same workspace and creates
// nothing new.
func SharedWorkspaceID(user uuid.UUID, requestID string) uuid.UUID {
	return uuid.NewSHA1(shareSpace, []byte(user.String()+"\x00"+requestID))
}

// shareRecord is what a workspace remembers of a share it recorded: the stream version
// of its ItemsMovedOut and the workspace it created.
type shareRecord struct {
	version uint64
	target  uuid.UUID
}

// ShareOf returns the shared workspace whose owner's mount point is folder, if any.
func (w *Workspace) ShareOf(folder ItemID) (uuid.UUID, bool) {
	s, ok := w.shares[folder]
	return s, ok
}

// ShareTarget returns the workspace a share c decided on w targets, whose state
// DecideShare needs: the workspace created by an earlier share with c's requestId, or
// the one c's folder already mounts, or the new one derived from the requestId.
func (w *Workspace) ShareTarget(c ShareFolder) uuid.UUID {
	if r, ok := w.shareRequests[c.RequestID]; ok {
		return r.target
	}
	if s, ok := w.shares[c.FolderID]; ok {
		return s
	}
	return SharedWorkspaceID(c.UserID, c.RequestID)
}
