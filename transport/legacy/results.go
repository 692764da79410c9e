package legacy

import (
	"math"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

// Storage is what the desktop is told about the object store its chunks go to (this
// service keeps metadata only; the desktop talks to OpenStack Swift directly).
type Storage struct {
	// AuthURL and Tenant are AccountInfo's swiftAuthUrl and swiftTenant.
	AuthURL, Tenant string
	// URL is every Workspace's swiftUrl (the Swift account's storage URL); each
	// workspace's swiftContainer is its id.
	URL string
}

// builder makes the Java objects of one message and shares what Java shares: Long and
// Integer values in -128…127 (the valueOf caches autoboxing uses) and Boolean.TRUE and
// FALSE. Everything else is a new object, as a Java server building the same message
// would make it.
type builder struct {
	longs map[int64]*js.Object
	ints  map[int32]*js.Object
	bools map[bool]*js.Object
}

func newBuilder() *builder {
	return &builder{longs: map[int64]*js.Object{}, ints: map[int32]*js.Object{}, bools: map[bool]*js.Object{}}
}

func (b *builder) long(v int64) *js.Object {
	if v < -128 || v > 127 {
		return js.NewLong(v)
	}
	if o, ok := b.longs[v]; ok {
		return o
	}
	o := js.NewLong(v)
	b.longs[v] = o
	return o
}

func (b *builder) optLong(p *int64) js.Value {
	if p == nil {
		return nil
	}
	return b.long(*p)
}

func (b *builder) optItemID(p *domain.ItemID) js.Value {
	if p == nil {
		return nil
	}
	return b.long(int64(*p))
}

func (b *builder) integer(v int32) *js.Object {
	if v < -128 || v > 127 {
		return js.NewInteger(v)
	}
	if o, ok := b.ints[v]; ok {
		return o
	}
	o := js.NewInteger(v)
	b.ints[v] = o
	return o
}

func (b *builder) boolean(v bool) *js.Object {
	if o, ok := b.bools[v]; ok {
		return o
	}
	o := js.NewBoolean(v)
	b.bools[v] = o
	return o
}

func optStr(p *string) js.Value {
	if p == nil {
		return nil
	}
	return js.Str(*p)
}

// AccountInfo renders getAccountInfo's result; swiftUser is the account's name.
func AccountInfo(a protocol.Account, st Storage) *js.Object {
	b := newBuilder()
	return js.New(js.ClassAccountInfo, map[string]js.Value{
		"email": js.Str(a.Email), "name": js.Str(a.Name),
		"quotaLimit": b.long(a.QuotaLimit), "quotaUsed": b.long(a.QuotaUsed),
		"swiftAuthUrl": js.Str(st.AuthURL), "swiftTenant": js.Str(st.Tenant), "swiftUser": js.Str(a.Name),
		"userId": js.NewUUID(a.UserID),
	})
}

// DeviceID renders updateDevice's result: a bare java.util.UUID.
func DeviceID(id uuid.UUID) *js.Object { return js.NewUUID(id) }

// Workspaces renders getWorkspaces' result as StackSync did: an ArrayList of Workspace,
// each with empty items and users, an owner User with only its id (and empty lists),
// and a parentItem that is always an Item, whose id is null where the member mounts
// the workspace at the root.
func Workspaces(wss []protocol.WorkspaceInfo, st Storage) *js.Object {
	b := newBuilder()
	out := make([]js.Value, len(wss))
	for i, w := range wss {
		owner := js.New(js.ClassUser, map[string]js.Value{
			"devices": js.NewArrayList(nil), "id": js.NewUUID(w.OwnerID), "workspaces": js.NewArrayList(nil)})
		parent := js.New(js.ClassItem, map[string]js.Value{"id": b.optItemID(w.ParentItemID), "versions": js.NewArrayList(nil)})
		out[i] = js.New(js.ClassWorkspace, map[string]js.Value{
			"isEncrypted": w.IsEncrypted, "isShared": w.IsShared,
			"id": js.NewUUID(w.ID), "items": js.NewArrayList(nil),
			"latestRevision": b.integer(int32(min(w.LatestRevision, math.MaxInt32))),
			"name":           js.Str(w.Name), "owner": owner, "parentItem": parent,
			"swiftContainer": js.Str(w.ID.String()), "swiftUrl": js.Str(st.URL),
			"users": js.NewArrayList(nil),
		})
	}
	return js.NewArrayList(out)
}

// Changes renders getChanges' result as StackSync read it from its database: an
// ArrayList of ItemMetadata (parents before children, as the service lists them) with
// level set (1 at the workspace root), tempId null, modifiedAt a java.sql.Timestamp and
// the chunks a java.util.Arrays$ArrayList.
func Changes(items []domain.ItemMetadata) *js.Object {
	b := newBuilder()
	levels := make(map[domain.ItemID]int32, len(items))
	out := make([]js.Value, len(items))
	for i, m := range items {
		lvl := int32(1)
		if m.ParentID != nil {
			if p, ok := levels[*m.ParentID]; ok {
				lvl = p + 1
			}
		}
		if m.ID != nil {
			levels[*m.ID] = lvl
		}
		out[i] = b.item(m, true, &lvl)
	}
	return js.NewArrayList(out)
}

// item renders one item version. stored: as read from the server's store (Timestamp,
// Arrays$ArrayList chunks, tempId null); otherwise as the client sent it (Date,
// ArrayList, tempId kept). The status MOVED, which the desktop cannot parse, is sent as
// RENAMED (StackSync treats both alike).
func (b *builder) item(m domain.ItemMetadata, stored bool, level *int32) *js.Object {
	f := map[string]js.Value{
		"checksum": b.long(m.Checksum), "deviceId": js.NewUUID(m.DeviceID), "filename": js.Str(m.Filename),
		"id": b.optItemID(m.ID), "isFolder": b.boolean(m.IsFolder), "isRoot": b.boolean(false),
		"mimetype": js.Str(m.Mimetype), "parentId": b.optItemID(m.ParentID), "parentVersion": b.optLong(m.ParentVersion),
		"size": b.long(m.Size), "version": b.long(m.Version), "workspaceId": js.NewUUID(m.WorkspaceID),
	}
	status := m.Status
	if status == domain.StatusMoved {
		status = domain.StatusRenamed
	}
	f["status"] = js.Str(string(status))
	if level != nil {
		f["level"] = b.integer(*level)
	}
	ms := m.ModifiedAt.UnixMilli()
	if stored {
		f["modifiedAt"] = timestamp(ms)
		// StackSync's store returns a folder's (absent) chunks as a new, empty ArrayList
		// and a file's as Arrays.asList of its array (golden 24).
		if m.IsFolder {
			f["chunks"] = js.NewArrayList(nil)
		} else if m.Chunks != nil {
			chunks := make([]js.Value, len(m.Chunks))
			for i, c := range m.Chunks {
				chunks[i] = js.Str(c)
			}
			f["chunks"] = js.New(js.ClassArraysArrayList, map[string]js.Value{
				"a": &js.Array{Class: js.MustLookup(js.ClassStringArray), Elems: chunks}})
		}
	} else {
		f["modifiedAt"] = js.NewDate(ms)
		f["tempId"] = b.optLong(m.TempID)
		if m.Chunks != nil {
			chunks := make([]js.Value, len(m.Chunks))
			for i, c := range m.Chunks {
				chunks[i] = js.Str(c)
			}
			f["chunks"] = js.NewArrayList(chunks)
		}
	}
	return js.New(js.ClassItemMetadata, f)
}

// timestamp renders an instant as a java.sql.Timestamp: whole seconds in its Date part,
// the fraction in nanos.
func timestamp(ms int64) *js.Object {
	sec := ms / 1000
	frac := ms % 1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	o := js.New(js.ClassTimestamp, map[string]js.Value{"nanos": int32(frac * 1_000_000)})
	o.Millis = sec * 1000
	return o
}

// CommitNotification renders a Committed event as notifyCommit's CommitNotification.
// limitQuota and usedQuota are always set (the desktop unboxes them). A succeeded item
// echoes the committed version as the client sent it, with its id; a failed one
// carries the server's current version as stored (or null if there is none) and, as in
// StackSync, that version as committedVersion (the desktop looks up its local copy of
// (metadata.id, committedVersion)); the protocol's reason has no place on this wire.
func CommitNotification(c domain.Committed) *js.Object {
	b := newBuilder()
	items := make([]js.Value, len(c.Items))
	for i, o := range c.Items {
		ci := map[string]js.Value{"commitSucceed": o.Succeeded}
		ver := o.CommittedVersion
		if o.Metadata != nil {
			ci["metadata"] = b.item(*o.Metadata, !o.Succeeded, nil)
			if !o.Succeeded {
				ver = o.Metadata.Version
			}
		}
		ci["committedVersion"] = b.long(ver)
		items[i] = js.New(js.ClassCommitInfo, ci)
	}
	return js.New(js.ClassCommitNotification, map[string]js.Value{
		"requestId": js.Str(c.RequestID), "items": js.NewArrayList(items),
		"limitQuota": b.long(c.LimitQuota), "usedQuota": b.long(c.UsedQuota),
	})
}

// UpdateWorkspaceNotification renders notifyUpdateWorkspace's parameter for an
// updateWorkspace request the service accepted.
func UpdateWorkspaceNotification(r protocol.UpdateWorkspaceRequest) *js.Object {
	b := newBuilder()
	return js.New(js.ClassUpdateWorkspaceNotif, map[string]js.Value{
		"requestId": js.Str(r.RequestID), "folderName": js.Str(r.Name),
		"parentItemId": b.optItemID(r.ParentItemID), "workspaceId": js.NewUUID(r.WorkspaceID),
	})
}

// Proposal is what a notifyShareProposal tells a user of a shared workspace.
type Proposal struct {
	RequestID   string // the share's
	WorkspaceID uuid.UUID
	FolderName  string // the user's name for the workspace
	FolderID    domain.ItemID
	OwnerID     uuid.UUID
	OwnerName   string
	IsEncrypted bool
}

// ShareProposalNotification renders notifyShareProposal's parameter, as StackSync sent
// it to multi#<userId> of the owner and of each member: swiftContainer is the
// workspace's id and swiftURL the Swift storage URL, as getWorkspaces gives them.
func ShareProposalNotification(p Proposal, st Storage) *js.Object {
	b := newBuilder()
	return js.New(js.ClassShareProposalNotif, map[string]js.Value{
		"requestId": js.Str(p.RequestID), "isEncrypted": p.IsEncrypted, "folderName": js.Str(p.FolderName),
		"itemId": b.long(int64(p.FolderID)), "ownerId": js.NewUUID(p.OwnerID), "ownerName": js.Str(p.OwnerName),
		"swiftContainer": js.Str(p.WorkspaceID.String()), "swiftURL": js.Str(st.URL), "workspaceId": js.NewUUID(p.WorkspaceID),
	})
}
