package wire

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// The shapes of sharing (PROTOCOL.md §8, v1.1): createShareProposal's request object,
// the notifyCommit events of a share (movedOut in the source workspace, movedIn in the
// shared one) and the user events notifyShareProposal, notifyUpdateWorkspace and
// notifyUnshare. This file only encodes and decodes; publishing them is the notifier's.

// Method names of the user events of §8.
const (
	MethodNotifyShareProposal   = "notifyShareProposal"
	MethodNotifyUpdateWorkspace = "notifyUpdateWorkspace"
	MethodNotifyUnshare         = "notifyUnshare"
)

// MaxShareEmails is the most e-mails a createShareProposal request may name; more is
// InvalidRequest (the service's own bound, service.MaxShareEmails, is the same).
const MaxShareEmails = 1000

// CreateShareProposalRequest is createShareProposal's request object.
type CreateShareProposalRequest struct {
	Common
	ItemID      domain.ItemID
	Emails      []string
	IsEncrypted bool
}

// ParseCreateShareProposal decodes createShareProposal's request object: requestId,
// userId, itemId and emails are required; isEncrypted absent (null) means false. Each
// e-mail is a string of at most 254 bytes of valid UTF-8 without NUL (PROTOCOL.md §3);
// which of them name users is the service's to decide.
func ParseCreateShareProposal(params json.RawMessage) (CreateShareProposalRequest, error) {
	var r struct {
		commonFields
		ItemID      *int64    `json:"itemId"`
		Emails      *[]string `json:"emails"`
		IsEncrypted *bool     `json:"isEncrypted"`
	}
	if err := strictObject(params, &r); err != nil {
		return CreateShareProposalRequest{}, invalid("createShareProposal: %v", err)
	}
	c, err := r.commonFields.parse(true)
	if err != nil {
		return CreateShareProposalRequest{}, err
	}
	if r.ItemID == nil {
		return CreateShareProposalRequest{}, invalid("itemId missing")
	}
	if *r.ItemID <= 0 || *r.ItemID >= 1<<53 {
		return CreateShareProposalRequest{}, invalid("itemId %d out of range (1 to 2^53-1)", *r.ItemID)
	}
	if r.Emails == nil {
		return CreateShareProposalRequest{}, invalid("emails missing")
	}
	if len(*r.Emails) > MaxShareEmails {
		return CreateShareProposalRequest{}, invalid("emails: %d, at most %d", len(*r.Emails), MaxShareEmails)
	}
	for i, e := range *r.Emails {
		if err := domain.CheckText("email", e, domain.MaxEmailBytes); err != nil {
			return CreateShareProposalRequest{}, invalid("emails[%d]: %v", i, err)
		}
	}
	out := CreateShareProposalRequest{Common: c, ItemID: domain.ItemID(*r.ItemID), Emails: *r.Emails}
	if r.IsEncrypted != nil {
		out.IsEncrypted = *r.IsEncrypted
	}
	return out, nil
}

// MovedOut is a notifyCommit's movedOut: the items of the source workspace that moved
// to WorkspaceID, from below folder FolderID (which stays).
type MovedOut struct {
	WorkspaceID string  `json:"workspaceId"`
	FolderID    int64   `json:"folderId"`
	ItemIDs     []int64 `json:"itemIds"`
}

// MovedIn is a notifyCommit's movedIn: the items came from FromWorkspaceID.
type MovedIn struct {
	FromWorkspaceID string `json:"fromWorkspaceId"`
}

// shareNotification is the notifyCommit of a share: a CommitNotification whose
// deviceId is null (no device made it) and which carries movedOut or movedIn. The
// outer DeviceID hides the embedded one in JSON.
type shareNotification struct {
	CommitNotification
	DeviceID *string `json:"deviceId"`
}

// shareEvent is the envelope of a share's notifyCommit.
type shareEvent struct {
	Method string              `json:"method"`
	Params []shareNotification `json:"params"`
	ID     string              `json:"id"`
	Async  bool                `json:"async"`
}

// FromMovedOut renders the notification of W's ItemsMovedOut: no items, and movedOut.
func FromMovedOut(e domain.ItemsMovedOut) CommitNotification {
	ids := make([]int64, len(e.ItemIDs))
	for i, id := range e.ItemIDs {
		ids[i] = int64(id)
	}
	return CommitNotification{RequestID: e.RequestID, Items: []CommitInfo{}, LimitQuota: e.LimitQuota,
		UsedQuota: e.UsedQuota, WorkspaceID: e.WorkspaceID.String(), UserID: e.UserID.String(),
		CommittedAt: FormatTime(e.At), WorkspaceVersion: e.WorkspaceVersion,
		MovedOut: &MovedOut{WorkspaceID: e.ToWorkspaceID.String(), FolderID: int64(e.FolderID), ItemIDs: ids}}
}

// FromMovedIn renders the notification of S's ItemsMovedIn: the current metadata of
// every moved item (its latest version, status unchanged) as a succeeded item, in the
// event's order (parents before children), and movedIn.
func FromMovedIn(e domain.ItemsMovedIn) CommitNotification {
	n := CommitNotification{RequestID: e.RequestID, Items: make([]CommitInfo, 0, len(e.Items)),
		LimitQuota: e.LimitQuota, UsedQuota: e.UsedQuota, WorkspaceID: e.WorkspaceID.String(),
		UserID: e.UserID.String(), CommittedAt: FormatTime(e.At), WorkspaceVersion: e.WorkspaceVersion,
		MovedIn: &MovedIn{FromWorkspaceID: e.FromWorkspaceID.String()}}
	for _, it := range e.Items {
		if len(it.Versions) == 0 {
			continue
		}
		m := FromItem(it.Versions[len(it.Versions)-1])
		n.Items = append(n.Items, CommitInfo{CommittedVersion: it.Versions[len(it.Versions)-1].Version, CommitSucceed: true, Metadata: &m})
	}
	return n
}

// EncodeNotifyMovedOut renders the notifyCommit event of W's ItemsMovedOut; eventID is
// the stored event's id.
func EncodeNotifyMovedOut(eventID string, e domain.ItemsMovedOut) ([]byte, error) {
	return encodeShareCommit(eventID, FromMovedOut(e))
}

// EncodeNotifyMovedIn renders the notifyCommit event of S's ItemsMovedIn; eventID is
// the stored event's id.
func EncodeNotifyMovedIn(eventID string, e domain.ItemsMovedIn) ([]byte, error) {
	return encodeShareCommit(eventID, FromMovedIn(e))
}

func encodeShareCommit(eventID string, n CommitNotification) ([]byte, error) {
	b, err := json.Marshal(shareEvent{Method: MethodNotifyCommit, Params: []shareNotification{{CommitNotification: n}},
		ID: eventID, Async: true})
	if err != nil {
		return nil, fmt.Errorf("encode notifyCommit %s: %w", eventID, err)
	}
	return b, nil
}

// ShareProposal is notifyShareProposal's parameter.
type ShareProposal struct {
	WorkspaceID string `json:"workspaceId"`
	FolderName  string `json:"folderName"`
	ItemID      int64  `json:"itemId"`
	OwnerID     string `json:"ownerId"`
	OwnerName   string `json:"ownerName"`
	IsEncrypted bool   `json:"isEncrypted"`
}

// WorkspaceUpdate is notifyUpdateWorkspace's parameter; ParentItemID is null at the root.
type WorkspaceUpdate struct {
	WorkspaceID  string `json:"workspaceId"`
	FolderName   string `json:"folderName"`
	ParentItemID *int64 `json:"parentItemId"`
}

// Unshare is notifyUnshare's parameter.
type Unshare struct {
	WorkspaceID string `json:"workspaceId"`
}

// userEvent is the envelope of an event on multi#<userId> (§2's event envelope).
type userEvent[T any] struct {
	Method string `json:"method"`
	Params []T    `json:"params"`
	ID     string `json:"id"`
	Async  bool   `json:"async"`
}

func encodeUserEvent[T any](method, eventID string, p T) ([]byte, error) {
	b, err := json.Marshal(userEvent[T]{Method: method, Params: []T{p}, ID: eventID, Async: true})
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", method, eventID, err)
	}
	return b, nil
}

// ProposalEventID is the envelope id of the k-th message an event gives, when that is
// not the event's first (k 0: the event's own id). The owner's notifyShareProposal is
// the second message of S's ItemsMovedIn (k 1): the notifier and a replayed share name it
// alike, so a device can tell a republished proposal from a new one.
func ProposalEventID(eventID uuid.UUID, k int) uuid.UUID {
	if k == 0 {
		return eventID
	}
	return uuid.NewSHA1(eventID, fmt.Appendf(nil, "notifyShareProposal/%d", k))
}

// EncodeNotifyShareProposal renders a notifyShareProposal event: shared workspace ws,
// created from folder item (named folderName) by owner.
func EncodeNotifyShareProposal(eventID string, ws uuid.UUID, folderName string, item domain.ItemID,
	owner uuid.UUID, ownerName string, encrypted bool) ([]byte, error) {
	return encodeUserEvent(MethodNotifyShareProposal, eventID, ShareProposal{WorkspaceID: ws.String(),
		FolderName: folderName, ItemID: int64(item), OwnerID: owner.String(), OwnerName: ownerName, IsEncrypted: encrypted})
}

// EncodeNotifyUpdateWorkspace renders a notifyUpdateWorkspace event from the
// updateWorkspace request it follows.
func EncodeNotifyUpdateWorkspace(eventID string, r protocol.UpdateWorkspaceRequest) ([]byte, error) {
	u := WorkspaceUpdate{WorkspaceID: r.WorkspaceID.String(), FolderName: r.Name}
	if r.ParentItemID != nil {
		u.ParentItemID = ptr(int64(*r.ParentItemID))
	}
	return encodeUserEvent(MethodNotifyUpdateWorkspace, eventID, u)
}

// EncodeNotifyUnshare renders a notifyUnshare event: the user left workspace ws.
func EncodeNotifyUnshare(eventID string, ws uuid.UUID) ([]byte, error) {
	return encodeUserEvent(MethodNotifyUnshare, eventID, Unshare{WorkspaceID: ws.String()})
}

// ToMovedOut converts a page's movedOut back (a device's side); an entry whose
// workspaceId is not a UUID is an error.
func ToMovedOut(list []MovedOutItem) ([]protocol.MovedOutItem, error) {
	var out []protocol.MovedOutItem
	for i, m := range list {
		ws, err := uuid.Parse(m.WorkspaceID)
		if err != nil {
			return nil, fmt.Errorf("movedOut[%d].workspaceId: %w", i, err)
		}
		out = append(out, protocol.MovedOutItem{ID: domain.ItemID(m.ID), WorkspaceID: ws})
	}
	return out, nil
}
