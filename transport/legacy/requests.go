package legacy

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Method names of ISyncService and of the events (MANIFEST.md).
const (
	MethodGetAccountInfo        = "getAccountInfo"
	MethodUpdateDevice          = "updateDevice"
	MethodGetWorkspaces         = "getWorkspaces"
	MethodGetChanges            = "getChanges"
	MethodCommit                = "commit"
	MethodUpdateWorkspace       = "updateWorkspace"
	MethodCreateShareProposal   = "createShareProposal"
	MethodNotifyCommit          = "notifyCommit"
	MethodNotifyUpdateWorkspace = "notifyUpdateWorkspace"
	MethodNotifyShareProposal   = "notifyShareProposal"
)

// requestClass is the commons request class each method takes.
var requestClass = map[string]string{
	MethodGetAccountInfo:      js.ClassGetAccountRequest,
	MethodUpdateDevice:        js.ClassUpdateDeviceRequest,
	MethodGetWorkspaces:       js.ClassGetWorkspacesRequest,
	MethodGetChanges:          js.ClassGetChangesRequest,
	MethodCommit:              js.ClassCommitRequest,
	MethodUpdateWorkspace:     js.ClassUpdateWorkspaceRequest,
	MethodCreateShareProposal: js.ClassShareProposalRequest,
}

// Known reports whether method is a method of ISyncService the legacy wire carries.
func Known(method string) bool { _, ok := requestClass[method]; return ok }

// Common holds the fields of every commons request.
type Common struct {
	RequestID string
	UserID    *uuid.UUID // null only on getAccountInfo (the desktop sends none)
}

// fields reads the fields of one request object, remembering the first error.
type fields struct {
	o    *js.Object
	what string
	err  error
}

func (f *fields) fail(name string, err error) {
	if f.err == nil {
		f.err = invalid("%s.%s: %v", f.what, name, err)
	}
}

func (f *fields) missing(name string) {
	if f.err == nil {
		f.err = invalid("%s.%s missing", f.what, name)
	}
}

func (f *fields) str(name string) *string {
	s, ok, err := js.AsString(f.o.Get(name))
	if err != nil {
		f.fail(name, err)
	}
	if !ok {
		return nil
	}
	return &s
}

func (f *fields) reqStr(name string) string {
	p := f.str(name)
	if p == nil || *p == "" {
		f.missing(name)
		return ""
	}
	return *p
}

func (f *fields) uuid(name string) *uuid.UUID {
	id, ok, err := js.AsUUID(f.o.Get(name))
	if err != nil {
		f.fail(name, err)
	}
	if !ok {
		return nil
	}
	return &id
}

func (f *fields) reqUUID(name string) uuid.UUID {
	p := f.uuid(name)
	if p == nil {
		f.missing(name)
		return uuid.Nil
	}
	return *p
}

func (f *fields) long(name string) *int64 {
	n, ok, err := js.AsLong(f.o.Get(name))
	if err != nil {
		f.fail(name, err)
	}
	if !ok {
		return nil
	}
	return &n
}

// param checks that call carries the request class of its method and returns its fields.
func param(c Call) (*fields, error) {
	want, ok := requestClass[c.Method]
	if !ok {
		return nil, invalid("unknown method %q", c.Method)
	}
	if c.Param.Class.Name != want {
		return nil, invalid("%s takes a %s, not a %s", c.Method, want, c.Param.Class.Name)
	}
	return &fields{o: c.Param, what: c.Method}, nil
}

func (f *fields) common(requireUser bool) Common {
	var c Common
	rid := f.str("requestId")
	switch {
	case rid == nil:
		f.missing("requestId")
	case len([]rune(*rid)) < 1 || len([]rune(*rid)) > wire.MaxRequestIDLen:
		f.fail("requestId", fmt.Errorf("must have 1 to %d characters", wire.MaxRequestIDLen))
	case !domain.ValidRequestID(*rid):
		f.fail("requestId", fmt.Errorf("must be valid UTF-8 without U+0000 (NUL)"))
	default:
		c.RequestID = *rid
	}
	c.UserID = f.uuid("userId")
	if requireUser && c.UserID == nil {
		f.missing("userId")
	}
	return c
}

// GetAccount is getAccountInfo's request.
type GetAccount struct {
	Common
	Email string
}

// ParseGetAccount reads getAccountInfo's GetAccountRequest; its userId may be null.
func ParseGetAccount(c Call) (GetAccount, error) {
	f, err := param(c)
	if err != nil {
		return GetAccount{}, err
	}
	r := GetAccount{Common: f.common(false), Email: f.reqStr("email")}
	return r, f.err
}

// ParseUpdateDevice reads updateDevice's UpdateDeviceRequest (deviceId null registers;
// ip and appVersion are null from the desktop).
func ParseUpdateDevice(c Call) (protocol.UpdateDeviceRequest, error) {
	f, err := param(c)
	if err != nil {
		return protocol.UpdateDeviceRequest{}, err
	}
	cm := f.common(true)
	r := protocol.UpdateDeviceRequest{RequestID: cm.RequestID, DeviceID: f.uuid("deviceId"),
		Name: f.reqStr("deviceName"), IP: f.str("ip"), AppVersion: f.str("appVersion")}
	if os := f.str("os"); os != nil {
		r.OS = *os
	} else {
		f.missing("os")
	}
	if cm.UserID != nil {
		r.UserID = *cm.UserID
	}
	return r, f.err
}

// ParseGetWorkspaces reads getWorkspaces' GetWorkspacesRequest.
func ParseGetWorkspaces(c Call) (Common, error) {
	f, err := param(c)
	if err != nil {
		return Common{}, err
	}
	cm := f.common(true)
	return cm, f.err
}

// GetChanges is getChanges' request.
type GetChanges struct {
	Common
	WorkspaceID uuid.UUID
}

// ParseGetChanges reads getChanges' GetChangesRequest.
func ParseGetChanges(c Call) (GetChanges, error) {
	f, err := param(c)
	if err != nil {
		return GetChanges{}, err
	}
	r := GetChanges{Common: f.common(true), WorkspaceID: f.reqUUID("workspaceId")}
	return r, f.err
}

// ParseUpdateWorkspace reads updateWorkspace's UpdateWorkspaceRequest.
func ParseUpdateWorkspace(c Call) (protocol.UpdateWorkspaceRequest, error) {
	f, err := param(c)
	if err != nil {
		return protocol.UpdateWorkspaceRequest{}, err
	}
	cm := f.common(true)
	r := protocol.UpdateWorkspaceRequest{RequestID: cm.RequestID, WorkspaceID: f.reqUUID("workspaceId")}
	if name := f.str("workspaceName"); name != nil {
		r.Name = *name
	} else {
		f.missing("workspaceName")
	}
	if p := f.long("parentItemId"); p != nil {
		id := domain.ItemID(*p)
		r.ParentItemID = &id
	}
	if cm.UserID != nil {
		r.UserID = *cm.UserID
	}
	return r, f.err
}

// ShareProposal is createShareProposal's request.
type ShareProposal struct {
	Common
	ItemID      domain.ItemID
	Emails      []string
	IsEncrypted bool
}

// ParseShareProposal reads createShareProposal's ShareProposalRequest.
func ParseShareProposal(c Call) (ShareProposal, error) {
	f, err := param(c)
	if err != nil {
		return ShareProposal{}, err
	}
	r := ShareProposal{Common: f.common(true)}
	r.IsEncrypted, _ = c.Param.Get("isEncrypted").(bool)
	if id := f.long("itemId"); id != nil {
		r.ItemID = domain.ItemID(*id)
	} else {
		f.missing("itemId")
	}
	emails, ok, err := js.AsList(c.Param.Get("emails"))
	if err != nil || !ok {
		f.missing("emails")
	}
	for i, e := range emails {
		s, ok, err := js.AsString(e)
		if err != nil || !ok {
			f.fail(fmt.Sprintf("emails[%d]", i), fmt.Errorf("not an e-mail: %s", js.Describe(e)))
			break
		}
		r.Emails = append(r.Emails, s)
	}
	return r, f.err
}

// ParseCommit reads commit's CommitRequest and its items. An item missing a field the
// JSON protocol requires (version, status, modifiedAt, isFolder, filename) or holding a
// value of the wrong class fails the request (InvalidRequest); values out of range are
// left to the domain, which fails the item alone.
func ParseCommit(c Call) (protocol.CommitRequest, error) {
	f, err := param(c)
	if err != nil {
		return protocol.CommitRequest{}, err
	}
	cm := f.common(true)
	r := protocol.CommitRequest{RequestID: cm.RequestID, WorkspaceID: f.reqUUID("workspaceId"), DeviceID: f.reqUUID("deviceId")}
	if cm.UserID != nil {
		r.UserID = *cm.UserID
	}
	if f.err != nil {
		return protocol.CommitRequest{}, f.err
	}
	items, ok, err := js.AsList(c.Param.Get("items"))
	switch {
	case err != nil:
		return protocol.CommitRequest{}, invalid("commit.items: %v", err)
	case !ok || len(items) == 0:
		return protocol.CommitRequest{}, invalid("commit.items missing or empty")
	case len(items) > wire.MaxCommitItems:
		return protocol.CommitRequest{}, invalid("%d items exceed the limit of %d per commit", len(items), wire.MaxCommitItems)
	}
	r.Items = make([]domain.ItemMetadata, len(items))
	for i, v := range items {
		if r.Items[i], err = parseItem(i, v); err != nil {
			return protocol.CommitRequest{}, err
		}
	}
	return r, nil
}

func parseItem(i int, v js.Value) (domain.ItemMetadata, error) {
	var m domain.ItemMetadata
	o, ok, err := js.AsObject(v, js.ClassItemMetadata)
	if err != nil || !ok {
		return m, invalid("commit.items[%d] is a %s, not an ItemMetadata", i, js.Describe(v))
	}
	f := &fields{o: o, what: fmt.Sprintf("commit.items[%d]", i)}
	if id := f.long("id"); id != nil {
		m.ID = ptr(domain.ItemID(*id))
	}
	if p := f.long("parentId"); p != nil {
		m.ParentID = ptr(domain.ItemID(*p))
	}
	m.TempID, m.ParentVersion = f.long("tempId"), f.long("parentVersion")
	if ver := f.long("version"); ver != nil {
		m.Version = *ver
	} else {
		f.missing("version")
	}
	m.Status = domain.Status(f.reqStr("status"))
	if d := f.uuid("deviceId"); d != nil {
		m.DeviceID = *d
	}
	if w := f.uuid("workspaceId"); w != nil {
		m.WorkspaceID = *w
	}
	ms, ok, err := js.AsDateMillis(o.Get("modifiedAt"))
	if err != nil {
		f.fail("modifiedAt", err)
	} else if !ok {
		f.missing("modifiedAt")
	}
	m.ModifiedAt = time.UnixMilli(ms).UTC()
	folder, ok, err := js.AsBoolean(o.Get("isFolder"))
	if err != nil {
		f.fail("isFolder", err)
	} else if !ok {
		f.missing("isFolder")
	}
	m.IsFolder = folder
	if name := f.str("filename"); name != nil {
		m.Filename = *name
	} else {
		f.missing("filename")
	}
	m.Checksum, m.Size = deref(f.long("checksum")), deref(f.long("size"))
	m.Mimetype = deref(f.str("mimetype"))
	m.Chunks = f.chunks()
	return m, f.err
}

// chunks reads the item's chunk names (null reads as []).
func (f *fields) chunks() []string {
	elems, _, err := js.AsList(f.o.Get("chunks"))
	if err != nil {
		f.fail("chunks", err)
		return nil
	}
	out := make([]string, 0, len(elems))
	for i, e := range elems {
		s, ok, err := js.AsString(e)
		if err != nil || !ok {
			f.fail(fmt.Sprintf("chunks[%d]", i), fmt.Errorf("not a chunk name: %s", js.Describe(e)))
			return nil
		}
		out = append(out, s)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
