package wire

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// Method names of ISyncService (PROTOCOL.md §4).
const (
	MethodGetAccountInfo      = "getAccountInfo"
	MethodUpdateDevice        = "updateDevice"
	MethodGetWorkspaces       = "getWorkspaces"
	MethodGetChanges          = "getChanges"
	MethodGetChangesSince     = "getChangesSince"
	MethodGetItemVersions     = "getItemVersions"
	MethodCommit              = "commit"
	MethodUpdateWorkspace     = "updateWorkspace"
	MethodCreateShareProposal = "createShareProposal"
	MethodNotifyCommit        = "notifyCommit"
)

// MaxRequestIDLen bounds a requestId (PROTOCOL.md §3: 1–128 characters).
const MaxRequestIDLen = 128

// Common holds the fields every request object has.
type Common struct {
	RequestID string
	UserID    uuid.UUID // uuid.Nil when absent (getAccountInfo)
}

type commonFields struct {
	RequestID *string `json:"requestId"`
	UserID    *string `json:"userId"`
}

func (c commonFields) parse(requireUser bool) (Common, error) {
	var out Common
	if c.RequestID == nil {
		return out, invalid("requestId missing")
	}
	if n := len([]rune(*c.RequestID)); n < 1 || n > MaxRequestIDLen {
		return out, invalid("requestId must have 1 to %d characters, has %d", MaxRequestIDLen, n)
	}
	if !domain.ValidRequestID(*c.RequestID) {
		return out, invalid("requestId must be valid UTF-8 without U+0000 (NUL)")
	}
	out.RequestID = *c.RequestID
	if c.UserID != nil || requireUser {
		id, err := parseUUID("userId", c.UserID)
		if err != nil {
			return out, err
		}
		out.UserID = id
	}
	return out, nil
}

// GetAccountInfoRequest is getAccountInfo's request object.
type GetAccountInfoRequest struct {
	Common
	Email string
}

// ParseGetAccountInfo decodes getAccountInfo's request object.
func ParseGetAccountInfo(params json.RawMessage) (GetAccountInfoRequest, error) {
	var r struct {
		commonFields
		Email *string `json:"email"`
	}
	if err := strictObject(params, &r); err != nil {
		return GetAccountInfoRequest{}, invalid("getAccountInfo: %v", err)
	}
	c, err := r.parse(false)
	if err != nil {
		return GetAccountInfoRequest{}, err
	}
	if r.Email == nil || *r.Email == "" {
		return GetAccountInfoRequest{}, invalid("email missing")
	}
	return GetAccountInfoRequest{Common: c, Email: *r.Email}, nil
}

// ParseUpdateDevice decodes updateDevice's request object.
func ParseUpdateDevice(params json.RawMessage) (protocol.UpdateDeviceRequest, error) {
	var r struct {
		commonFields
		DeviceID   *string `json:"deviceId"`
		DeviceName *string `json:"deviceName"`
		OS         *string `json:"os"`
		IP         *string `json:"ip"`
		AppVersion *string `json:"appVersion"`
	}
	if err := strictObject(params, &r); err != nil {
		return protocol.UpdateDeviceRequest{}, invalid("updateDevice: %v", err)
	}
	c, err := r.parse(true)
	if err != nil {
		return protocol.UpdateDeviceRequest{}, err
	}
	dev, err := parseOptUUID("deviceId", r.DeviceID)
	if err != nil {
		return protocol.UpdateDeviceRequest{}, err
	}
	if r.DeviceName == nil || *r.DeviceName == "" {
		return protocol.UpdateDeviceRequest{}, invalid("deviceName missing")
	}
	if r.OS == nil {
		return protocol.UpdateDeviceRequest{}, invalid("os missing")
	}
	return protocol.UpdateDeviceRequest{RequestID: c.RequestID, UserID: c.UserID, DeviceID: dev,
		Name: *r.DeviceName, OS: *r.OS, IP: r.IP, AppVersion: r.AppVersion}, nil
}

// ParseGetWorkspaces decodes getWorkspaces' request object.
func ParseGetWorkspaces(params json.RawMessage) (Common, error) {
	var r commonFields
	if err := strictObject(params, &r); err != nil {
		return Common{}, invalid("getWorkspaces: %v", err)
	}
	return r.parse(true)
}

// WorkspaceRequest is a request object naming a workspace (getChanges and the rest).
type WorkspaceRequest struct {
	Common
	WorkspaceID uuid.UUID
}

type workspaceFields struct {
	commonFields
	WorkspaceID *string `json:"workspaceId"`
}

func (w workspaceFields) parse() (WorkspaceRequest, error) {
	c, err := w.commonFields.parse(true)
	if err != nil {
		return WorkspaceRequest{}, err
	}
	ws, err := parseUUID("workspaceId", w.WorkspaceID)
	if err != nil {
		return WorkspaceRequest{}, err
	}
	return WorkspaceRequest{Common: c, WorkspaceID: ws}, nil
}

// ParseGetChanges decodes getChanges' request object.
func ParseGetChanges(params json.RawMessage) (WorkspaceRequest, error) {
	var r workspaceFields
	if err := strictObject(params, &r); err != nil {
		return WorkspaceRequest{}, invalid("getChanges: %v", err)
	}
	return r.parse()
}

// Paging limits of getChangesSince.
const (
	DefaultChangesLimit = 1000
	MaxChangesLimit     = 10000
)

// GetChangesSinceRequest is getChangesSince's request object.
type GetChangesSinceRequest struct {
	WorkspaceRequest
	SinceVersion int64
	Limit        int
}

// ParseGetChangesSince decodes getChangesSince's request object.
func ParseGetChangesSince(params json.RawMessage) (GetChangesSinceRequest, error) {
	var r struct {
		workspaceFields
		SinceVersion *int64 `json:"sinceVersion"`
		Limit        *int64 `json:"limit"`
	}
	if err := strictObject(params, &r); err != nil {
		return GetChangesSinceRequest{}, invalid("getChangesSince: %v", err)
	}
	ws, err := r.workspaceFields.parse()
	if err != nil {
		return GetChangesSinceRequest{}, err
	}
	out := GetChangesSinceRequest{WorkspaceRequest: ws, Limit: DefaultChangesLimit}
	if r.SinceVersion == nil {
		return out, invalid("sinceVersion missing")
	}
	if *r.SinceVersion < 0 {
		return out, invalid("sinceVersion must be >= 0, is %d", *r.SinceVersion)
	}
	out.SinceVersion = *r.SinceVersion
	if r.Limit != nil {
		if *r.Limit < 1 || *r.Limit > MaxChangesLimit {
			return out, invalid("limit must be 1 to %d, is %d", MaxChangesLimit, *r.Limit)
		}
		out.Limit = int(*r.Limit)
	}
	return out, nil
}

// GetItemVersionsRequest is getItemVersions' request object.
type GetItemVersionsRequest struct {
	WorkspaceRequest
	ItemID domain.ItemID
}

// ParseGetItemVersions decodes getItemVersions' request object.
func ParseGetItemVersions(params json.RawMessage) (GetItemVersionsRequest, error) {
	var r struct {
		workspaceFields
		ItemID *int64 `json:"itemId"`
	}
	if err := strictObject(params, &r); err != nil {
		return GetItemVersionsRequest{}, invalid("getItemVersions: %v", err)
	}
	ws, err := r.workspaceFields.parse()
	if err != nil {
		return GetItemVersionsRequest{}, err
	}
	if r.ItemID == nil {
		return GetItemVersionsRequest{}, invalid("itemId missing")
	}
	return GetItemVersionsRequest{WorkspaceRequest: ws, ItemID: domain.ItemID(*r.ItemID)}, nil
}

// MaxCommitItems is the most items ParseCommit converts, refused early before the
// items are checked: the protocol's default limit (domain.DefaultMaxCommitItems). The
// server's own limit (service.Config.Limits.MaxCommitItems) may be lower, never higher.
const MaxCommitItems = domain.DefaultMaxCommitItems

// ParseCommit decodes commit's request object.
func ParseCommit(params json.RawMessage) (protocol.CommitRequest, error) {
	var r commitParams
	if !fastCommitParams(params, &r) {
		r = commitParams{}
		if err := strictObject(params, &r); err != nil {
			return protocol.CommitRequest{}, invalid("commit: %v", err)
		}
	}
	ws, err := r.workspaceFields.parse()
	if err != nil {
		return protocol.CommitRequest{}, err
	}
	dev, err := parseUUID("deviceId", r.DeviceID)
	if err != nil {
		return protocol.CommitRequest{}, err
	}
	if r.Items == nil || len(*r.Items) == 0 {
		return protocol.CommitRequest{}, invalid("items missing or empty")
	}
	if len(*r.Items) > MaxCommitItems {
		return protocol.CommitRequest{}, invalid("%d items exceed the limit of %d per commit", len(*r.Items), MaxCommitItems)
	}
	items := make([]domain.ItemMetadata, len(*r.Items))
	for i, w := range *r.Items {
		if items[i], err = w.ToItem(i); err != nil {
			return protocol.CommitRequest{}, err
		}
	}
	return protocol.CommitRequest{RequestID: ws.RequestID, UserID: ws.UserID, WorkspaceID: ws.WorkspaceID,
		DeviceID: dev, Items: items}, nil
}

// ParseUpdateWorkspace decodes updateWorkspace's request object.
func ParseUpdateWorkspace(params json.RawMessage) (protocol.UpdateWorkspaceRequest, error) {
	var r struct {
		workspaceFields
		WorkspaceName *string `json:"workspaceName"`
		ParentItemID  *int64  `json:"parentItemId"`
	}
	if err := strictObject(params, &r); err != nil {
		return protocol.UpdateWorkspaceRequest{}, invalid("updateWorkspace: %v", err)
	}
	ws, err := r.workspaceFields.parse()
	if err != nil {
		return protocol.UpdateWorkspaceRequest{}, err
	}
	if r.WorkspaceName == nil {
		return protocol.UpdateWorkspaceRequest{}, invalid("workspaceName missing")
	}
	out := protocol.UpdateWorkspaceRequest{RequestID: ws.RequestID, UserID: ws.UserID, WorkspaceID: ws.WorkspaceID, Name: *r.WorkspaceName}
	if r.ParentItemID != nil {
		out.ParentItemID = ptr(domain.ItemID(*r.ParentItemID))
	}
	return out, nil
}

// AccountInfo is getAccountInfo's result.
type AccountInfo struct {
	UserID     string `json:"userId"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	QuotaLimit int64  `json:"quotaLimit"`
	QuotaUsed  int64  `json:"quotaUsed"`
}

// FromAccount renders an account.
func FromAccount(a protocol.Account) AccountInfo {
	return AccountInfo{UserID: a.UserID.String(), Name: a.Name, Email: a.Email, QuotaLimit: a.QuotaLimit, QuotaUsed: a.QuotaUsed}
}

// IDRef is an object holding only an id ({"id": ...}).
type IDRef[T any] struct {
	ID T `json:"id"`
}

// Workspace is one entry of getWorkspaces' result.
type Workspace struct {
	ID             string        `json:"id"`
	Name           string        `json:"name"`
	Owner          IDRef[string] `json:"owner"`
	IsShared       bool          `json:"isShared"`
	IsEncrypted    bool          `json:"isEncrypted"`
	ParentItem     *IDRef[int64] `json:"parentItem"`
	LatestRevision int64         `json:"latestRevision"`
}

// FromWorkspaces renders getWorkspaces' result (never null).
func FromWorkspaces(ws []protocol.WorkspaceInfo) []Workspace {
	out := make([]Workspace, len(ws))
	for i, w := range ws {
		out[i] = Workspace{ID: w.ID.String(), Name: w.Name, Owner: IDRef[string]{w.OwnerID.String()},
			IsShared: w.IsShared, IsEncrypted: w.IsEncrypted, LatestRevision: w.LatestRevision}
		if w.ParentItemID != nil {
			out[i].ParentItem = &IDRef[int64]{int64(*w.ParentItemID)}
		}
	}
	return out
}

// ChangesPage is getChangesSince's result.
type ChangesPage struct {
	Items            []ItemMetadata `json:"items"`
	FromVersion      int64          `json:"fromVersion"`
	ToVersion        int64          `json:"toVersion"`
	HasMore          bool           `json:"hasMore"`
	WorkspaceVersion int64          `json:"workspaceVersion"`
	// MovedOut lists the items that left the workspace by a share within the page's
	// range (PROTOCOL.md §8); absent when there are none.
	MovedOut []MovedOutItem `json:"movedOut,omitempty"`
}

// MovedOutItem is one entry of a page's movedOut.
type MovedOutItem struct {
	ID          int64  `json:"id"`
	WorkspaceID string `json:"workspaceId"`
}

// FromChangesPage renders a page.
func FromChangesPage(p protocol.ChangesPage) ChangesPage {
	out := ChangesPage{Items: FromItems(p.Items), FromVersion: p.FromVersion, ToVersion: p.ToVersion,
		HasMore: p.HasMore, WorkspaceVersion: p.WorkspaceVersion}
	for _, m := range p.MovedOut {
		out.MovedOut = append(out.MovedOut, MovedOutItem{ID: int64(m.ID), WorkspaceID: m.WorkspaceID.String()})
	}
	return out
}

// CommitInfo is the outcome of one committed item.
type CommitInfo struct {
	CommittedVersion int64         `json:"committedVersion"`
	CommitSucceed    bool          `json:"commitSucceed"`
	Metadata         *ItemMetadata `json:"metadata"`
	Reason           string        `json:"reason,omitempty"`
}

// CommitNotification is the parameter of a notifyCommit event.
type CommitNotification struct {
	RequestID        string       `json:"requestId"`
	Items            []CommitInfo `json:"items"`
	LimitQuota       int64        `json:"limitQuota"`
	UsedQuota        int64        `json:"usedQuota"`
	WorkspaceID      string       `json:"workspaceId"`
	UserID           string       `json:"userId"`
	DeviceID         string       `json:"deviceId"`
	CommittedAt      string       `json:"committedAt"`
	WorkspaceVersion int64        `json:"workspaceVersion"`
	// MovedOut and MovedIn are set on the notifyCommits of a share (PROTOCOL.md §8,
	// share.go), absent otherwise.
	MovedOut *MovedOut `json:"movedOut,omitempty"`
	MovedIn  *MovedIn  `json:"movedIn,omitempty"`
}

// FromCommitted renders the notification of a recorded commit.
func FromCommitted(c domain.Committed) CommitNotification {
	n := CommitNotification{RequestID: c.RequestID, Items: make([]CommitInfo, len(c.Items)),
		LimitQuota: c.LimitQuota, UsedQuota: c.UsedQuota, WorkspaceID: c.WorkspaceID.String(),
		UserID: c.UserID.String(), DeviceID: c.DeviceID.String(), CommittedAt: FormatTime(c.CommittedAt),
		WorkspaceVersion: c.WorkspaceVersion}
	for i, o := range c.Items {
		n.Items[i] = CommitInfo{CommittedVersion: o.CommittedVersion, CommitSucceed: o.Succeeded, Reason: string(o.Reason)}
		if o.Metadata != nil {
			m := FromItem(*o.Metadata)
			if !o.Succeeded && o.Metadata.Chunks == nil {
				// The domain omitted a failed item's long chunk list (PROTOCOL.md §3
				// CommitInfo): null, so the device reads them with getItemVersions.
				m.Chunks = nil
			}
			n.Items[i].Metadata = &m
		}
	}
	return n
}

// EncodeNotifyCommit renders the notifyCommit event of a recorded commit; eventID is the
// envelope's id (use the stored event's id, so that duplicates are recognisable).
// It renders by hand (AppendNotifyCommit), byte for byte what json.Marshal gives for
// the Event of FromCommitted(c); the error is kept for the callers' sake and is nil.
func EncodeNotifyCommit(eventID string, c domain.Committed) ([]byte, error) {
	return AppendNotifyCommit(make([]byte, 0, notifyCommitSize(&c)), eventID, &c), nil
}

// BusyRetryAfterMs renders a retry-after duration in whole milliseconds (at least 1).
func BusyRetryAfterMs(d time.Duration) int64 { return max(1, d.Milliseconds()) }
