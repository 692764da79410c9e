package legacy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

// roundTrip encodes v and decodes it again, as the client would read it.
func roundTrip(t *testing.T, v *js.Object) *js.Object {
	t.Helper()
	b, err := js.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := js.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return out.(*js.Object)
}

func field(t *testing.T, o *js.Object, path ...string) js.Value {
	t.Helper()
	var v js.Value = o
	for _, p := range path {
		obj, ok := v.(*js.Object)
		if !ok {
			t.Fatalf("%s: not an object but %s", p, js.Describe(v))
		}
		if obj.Class.Name == js.ClassArrayList || obj.Class.Name == js.ClassArraysArrayList {
			elems, _, _ := js.AsList(obj)
			var i int
			if _, err := fmtSscan(p, &i); err != nil || i >= len(elems) {
				t.Fatalf("no element %s", p)
			}
			v = elems[i]
			continue
		}
		v = obj.Get(p)
	}
	return v
}

// A failed item carries the server's current version, and that version as
// committedVersion (the desktop acknowledges its local (id, committedVersion)), not
// the version the device sent; limitQuota and usedQuota are Longs even when 0.
func TestCommitNotificationQuirks(t *testing.T) {
	server := withID(fileV2(), fileID) // server at version 2
	c := domain.Committed{RequestID: "wirehost-1", Items: []domain.ItemOutcome{
		{CommittedVersion: 5, Metadata: &server, Reason: domain.ReasonWrongVersion},
		{CommittedVersion: 4, Reason: domain.ReasonWrongVersion}, // no such item: no metadata
	}}
	n := roundTrip(t, CommitNotification(c))
	if v, _, _ := js.AsLong(field(t, n, "items", "0", "committedVersion")); v != 2 {
		t.Errorf("failed item committedVersion %d, want the server's 2", v)
	}
	if v, _, _ := js.AsLong(field(t, n, "items", "1", "committedVersion")); v != 4 {
		t.Errorf("failed item without metadata: committedVersion %d, want the sent 4", v)
	}
	if m := field(t, n, "items", "1", "metadata"); m != nil {
		t.Errorf("metadata of an unknown item: %s", js.Describe(m))
	}
	if d := field(t, n, "items", "0", "metadata", "modifiedAt"); js.Describe(d) != js.ClassTimestamp {
		t.Errorf("failed item's modifiedAt is a %s, want the stored form (Timestamp)", js.Describe(d))
	}
	for _, q := range []string{"limitQuota", "usedQuota"} {
		if v, ok, err := js.AsLong(field(t, n, q)); !ok || err != nil || v != 0 {
			t.Errorf("%s = %v (present %v, %v), want Long 0", q, v, ok, err)
		}
	}
}

// The desktop cannot parse MOVED (CloneFile.Status has no such value): it is sent as
// RENAMED, which StackSync treats the same, in events and in getChanges.
func TestMovedIsSentAsRenamed(t *testing.T) {
	m := withID(fileV2(), fileID)
	m.Status = domain.StatusMoved
	n := roundTrip(t, CommitNotification(domain.Committed{RequestID: "r", Items: []domain.ItemOutcome{
		{CommittedVersion: 2, Succeeded: true, Metadata: &m}}}))
	if s, _, _ := js.AsString(field(t, n, "items", "0", "metadata", "status")); s != "RENAMED" {
		t.Errorf("event status %q", s)
	}
	ch := roundTrip(t, Changes([]domain.ItemMetadata{m}))
	if s, _, _ := js.AsString(field(t, ch, "0", "status")); s != "RENAMED" {
		t.Errorf("getChanges status %q", s)
	}
}

// getChanges' level is the depth below the workspace root (1 at the root), taken from
// the parents listed before; a member's mount point is an Item with that id.
func TestLevelsAndParentItem(t *testing.T) {
	a, b, c := domain.ItemID(1), domain.ItemID(2), domain.ItemID(3)
	items := []domain.ItemMetadata{{ID: &a}, {ID: &b, ParentID: &a}, {ID: &c, ParentID: &b}, {ID: ptr(domain.ItemID(4)), ParentID: ptr(domain.ItemID(99))}}
	ch := roundTrip(t, Changes(items))
	for i, want := range []int32{1, 2, 3, 1} {
		if lvl, _, _ := js.AsInteger(field(t, ch, itoa(i), "level")); lvl != want {
			t.Errorf("item %d level %d, want %d", i, lvl, want)
		}
	}
	ws := roundTrip(t, Workspaces([]protocol.WorkspaceInfo{{ID: uuid.New(), ParentItemID: &b, LatestRevision: 1 << 40}}, Storage{}))
	if id, ok, _ := js.AsLong(field(t, ws, "0", "parentItem", "id")); !ok || id != 2 {
		t.Errorf("parentItem.id %d (%v), want 2", id, ok)
	}
	if r, _, _ := js.AsInteger(field(t, ws, "0", "latestRevision")); r != 1<<31-1 {
		t.Errorf("latestRevision %d, want clamped to Integer.MAX_VALUE", r)
	}
}

// A Timestamp keeps whole seconds in its Date part, also before 1970.
func TestTimestampBefore1970(t *testing.T) {
	ts := timestamp(-1)
	if ts.Millis != -1000 || ts.Get("nanos") != int32(999_000_000) {
		t.Errorf("Date part %d, nanos %v", ts.Millis, ts.Get("nanos"))
	}
	if ms, _, _ := js.AsDateMillis(ts); ms != -1 {
		t.Errorf("read back %d", ms)
	}
}

func encodeCall(t *testing.T, method string, param *js.Object, extra ...js.Value) []byte {
	t.Helper()
	params := js.NewObjectArray(append([]js.Value{param}, extra...)...)
	b, err := js.Encode(js.New(js.ClassOmqRequest, map[string]js.Value{"id": js.Str("c1"), "method": js.Str(method), "params": params}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Malformed requests are InvalidRequest, with a message naming what is wrong, and
// nothing reaches the service.
func TestRequestsRefused(t *testing.T) {
	user := js.NewUUID(wire1)
	item := func(f map[string]js.Value) *js.Object {
		base := map[string]js.Value{"version": js.NewLong(1), "status": js.Str("NEW"), "modifiedAt": js.NewDate(1),
			"isFolder": js.NewBoolean(false), "filename": js.Str("a")}
		for k, v := range f {
			base[k] = v
		}
		return js.New(js.ClassItemMetadata, base)
	}
	commit := func(items ...js.Value) *js.Object {
		return js.New(js.ClassCommitRequest, map[string]js.Value{"requestId": js.Str("r"), "userId": user,
			"workspaceId": js.NewUUID(wire1WS), "deviceId": js.NewUUID(regDevice), "items": js.NewArrayList(items)})
	}
	cases := []struct {
		name, why string
		body      []byte
		parse     func(Call) error
	}{
		{"not java", "java stream refused", []byte(`{"method":"commit"}`), nil},
		{"response as request", "not an omq.common.message.Request", golden(t, "27-resp-updateWorkspace-void.bin"), nil},
		{"two params", "exactly one request object, has 2",
			encodeCall(t, MethodGetWorkspaces, js.New(js.ClassGetWorkspacesRequest, nil), js.Str("x")), nil},
		{"unknown method", `unknown method "getChangesSince"`,
			encodeCall(t, "getChangesSince", js.New(js.ClassGetWorkspacesRequest, nil)), func(c Call) error { _, err := ParseGetWorkspaces(c); return err }},
		{"request of another method", "commit takes a com.stacksync.commons.requests.CommitRequest, not a com.stacksync.commons.requests.GetWorkspacesRequest",
			encodeCall(t, MethodCommit, js.New(js.ClassGetWorkspacesRequest, map[string]js.Value{"requestId": js.Str("r"), "userId": user})),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"no requestId", "getWorkspaces.requestId missing",
			encodeCall(t, MethodGetWorkspaces, js.New(js.ClassGetWorkspacesRequest, map[string]js.Value{"userId": user})),
			func(c Call) error { _, err := ParseGetWorkspaces(c); return err }},
		{"requestId too long", "requestId: must have 1 to 128 characters",
			encodeCall(t, MethodGetWorkspaces, js.New(js.ClassGetWorkspacesRequest, map[string]js.Value{"requestId": js.Str(strings.Repeat("r", 129)), "userId": user})),
			func(c Call) error { _, err := ParseGetWorkspaces(c); return err }},
		{"no userId", "getChanges.userId missing",
			encodeCall(t, MethodGetChanges, js.New(js.ClassGetChangesRequest, map[string]js.Value{"requestId": js.Str("r"), "workspaceId": user})),
			func(c Call) error { _, err := ParseGetChanges(c); return err }},
		{"no email", "getAccountInfo.email missing",
			encodeCall(t, MethodGetAccountInfo, js.New(js.ClassGetAccountRequest, map[string]js.Value{"requestId": js.Str("r")})),
			func(c Call) error { _, err := ParseGetAccount(c); return err }},
		{"no items", "commit.items missing or empty", encodeCall(t, MethodCommit, commit()),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"item without version", "commit.items[0].version missing", encodeCall(t, MethodCommit, commit(item(map[string]js.Value{"version": nil}))),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"item without modifiedAt", "commit.items[1].modifiedAt missing",
			encodeCall(t, MethodCommit, commit(item(nil), item(map[string]js.Value{"modifiedAt": nil}))),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"null chunk", "commit.items[0].chunks[1]: not a chunk name: null",
			encodeCall(t, MethodCommit, commit(item(map[string]js.Value{"chunks": js.NewArrayList([]js.Value{js.Str("c"), nil})}))),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"string as item", "commit.items[0] is a String, not an ItemMetadata", encodeCall(t, MethodCommit, commit(js.Str("x"))),
			func(c Call) error { _, err := ParseCommit(c); return err }},
		{"item without isFolder", "commit.items[0].isFolder missing",
			encodeCall(t, MethodCommit, commit(item(map[string]js.Value{"isFolder": nil}))),
			func(c Call) error { _, err := ParseCommit(c); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := DecodeCall(c.body)
			if err == nil && c.parse != nil {
				err = c.parse(cl)
			}
			if err == nil {
				t.Fatalf("accepted, want refused: %s", c.why)
			}
			if !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q, want InvalidRequest saying %q", err, c.why)
			}
		})
	}
}

// Error types: the exception the method declares for the code, else the method's
// "not done" exception, else java.lang.RuntimeException; Internal errors say nothing
// of their cause.
func TestExceptionOf(t *testing.T) {
	cases := []struct {
		method string
		err    error
		typ    string
		msg    string
	}{
		{MethodGetAccountInfo, protocol.ErrUserNotFound, ExcUserNotFound, "UserNotFoundException: user not found"},
		{MethodGetAccountInfo, &protocol.BusyError{}, ExcRuntime, "Busy: "},
		{MethodUpdateDevice, protocol.ErrUnauthorized, ExcDeviceNotUpdated, "Unauthorized: "},
		{MethodUpdateDevice, protocol.ErrDeviceNotValid, ExcDeviceNotUpdated, "DeviceNotValidException"},
		{MethodUpdateDevice, protocol.ErrUserNotFound, ExcUserNotFound, "UserNotFoundException"},
		{MethodGetWorkspaces, protocol.ErrUnauthorized, ExcNoWorkspacesFound, "Unauthorized"},
		{MethodGetChanges, protocol.ErrWorkspaceNotFound, ExcRuntime, "WorkspaceNotFound"},
		{MethodUpdateWorkspace, protocol.ErrInvalid, ExcWorkspaceNotUpdated, "InvalidRequest"},
		{"nosuch", protocol.ErrInvalid, ExcRuntime, "InvalidRequest"},
		{MethodGetChanges, errors.New("pg: connection refused at 10.0.0.1"), ExcRuntime, "Internal: internal error"},
	}
	for _, c := range cases {
		e := ExceptionOf(c.method, c.err)
		if e.Type != c.typ || !strings.HasPrefix(e.Message, c.msg) || strings.Contains(e.Message, "10.0.0.1") {
			t.Errorf("%s %v: %+v, want %s %q…", c.method, c.err, e, c.typ, c.msg)
		}
	}
}

// A stored folder's chunks are an empty ArrayList even when the version holds none
// (never null: StackSync never sent null chunks).
func TestStoredFolderChunks(t *testing.T) {
	id := domain.ItemID(1)
	ch := roundTrip(t, Changes([]domain.ItemMetadata{{ID: &id, IsFolder: true}}))
	l, ok, err := js.AsList(field(t, ch, "0", "chunks"))
	if !ok || err != nil || len(l) != 0 || js.Describe(field(t, ch, "0", "chunks")) != js.ClassArrayList {
		t.Errorf("folder chunks: %s (%v)", js.Describe(field(t, ch, "0", "chunks")), err)
	}
}
