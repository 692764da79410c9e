package wire_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// A request case is a golden request envelope (testdata/golden/requests/<name>.json,
// written by hand from PROTOCOL.md §2 and §4, in the shapes devices send: ObjectMQ's
// omitted nulls, async as a string, unknown fields) and the values it must decode into.
type requestCase struct {
	method string
	id     string
	async  bool
	parse  func(json.RawMessage) (any, error)
	want   any
}

func parser[T any](f func(json.RawMessage) (T, error)) func(json.RawMessage) (any, error) {
	return func(p json.RawMessage) (any, error) { return f(p) }
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func requestCases() map[string]requestCase {
	common := func(req string) wire.Common { return wire.Common{RequestID: req, UserID: gUser} }
	inWS := func(req string, ws uuid.UUID) wire.WorkspaceRequest {
		return wire.WorkspaceRequest{Common: common(req), WorkspaceID: ws}
	}
	return map[string]requestCase{
		"getAccountInfo": {method: wire.MethodGetAccountInfo, id: "corr-acct-1", async: false,
			parse: parser(wire.ParseGetAccountInfo),
			want:  wire.GetAccountInfoRequest{Common: wire.Common{RequestID: "acct-1", UserID: uuid.Nil}, Email: "ann@example.org"}},
		"getAccountInfo-with-user": {method: wire.MethodGetAccountInfo, id: "corr-acct-2", async: false,
			parse: parser(wire.ParseGetAccountInfo),
			want:  wire.GetAccountInfoRequest{Common: common("acct-2"), Email: "carol@example.org"}},
		"updateDevice-register": {method: wire.MethodUpdateDevice, id: "corr-reg-1", async: false,
			parse: parser(wire.ParseUpdateDevice),
			want: protocol.UpdateDeviceRequest{RequestID: "reg-1", UserID: gUser, DeviceID: nil, Name: "laptop",
				OS: "Linux 6.8", IP: nil, AppVersion: nil}},
		"updateDevice-update": {method: wire.MethodUpdateDevice, id: "corr-upd-1", async: false,
			parse: parser(wire.ParseUpdateDevice),
			want: protocol.UpdateDeviceRequest{RequestID: "upd-1", UserID: gUser, DeviceID: &gDev, Name: "work laptop",
				OS: "Windows 11", IP: str("192.0.2.10"), AppVersion: str("2.1.0")}},
		"getWorkspaces": {method: wire.MethodGetWorkspaces, id: "corr-ws-1", async: false,
			parse: parser(wire.ParseGetWorkspaces), want: common("ws-1")},
		"getChanges": {method: wire.MethodGetChanges, id: "corr-ch-1", async: false,
			parse: parser(wire.ParseGetChanges), want: inWS("ch-1", gWS)},
		"getChangesSince": {method: wire.MethodGetChangesSince, id: "corr-cs-1", async: false,
			parse: parser(wire.ParseGetChangesSince),
			want:  wire.GetChangesSinceRequest{WorkspaceRequest: inWS("cs-1", gShared), SinceVersion: 12, Limit: 500}},
		"getChangesSince-default-limit": {method: wire.MethodGetChangesSince, id: "corr-cs-2", async: false,
			parse: parser(wire.ParseGetChangesSince),
			want:  wire.GetChangesSinceRequest{WorkspaceRequest: inWS("cs-2", gWS), SinceVersion: 0, Limit: 1000}},
		"getItemVersions": {method: wire.MethodGetItemVersions, id: "corr-iv-1", async: false,
			parse: parser(wire.ParseGetItemVersions),
			want:  wire.GetItemVersionsRequest{WorkspaceRequest: inWS("iv-1", gWS), ItemID: 1<<53 - 1}},
		"updateWorkspace": {method: wire.MethodUpdateWorkspace, id: "corr-uw-1", async: false,
			parse: parser(wire.ParseUpdateWorkspace),
			want: protocol.UpdateWorkspaceRequest{RequestID: "uw-1", UserID: gUser, WorkspaceID: gShared,
				Name: "Shared with Bob", ParentItemID: iid(4001)}},
		"updateWorkspace-root": {method: wire.MethodUpdateWorkspace, id: "corr-uw-2", async: false,
			parse: parser(wire.ParseUpdateWorkspace),
			want: protocol.UpdateWorkspaceRequest{RequestID: "uw-2", UserID: gUser, WorkspaceID: gShared,
				Name: "Bob's", ParentItemID: nil}},
		"createShareProposal": {method: wire.MethodCreateShareProposal, id: "corr-share-1", async: true,
			parse: parser(wire.ParseCreateShareProposal),
			want: wire.CreateShareProposalRequest{Common: common("share-1"), ItemID: 4001,
				Emails: []string{"bob@example.org", "Carol@Example.org"}, IsEncrypted: true}},
		// isEncrypted omitted (ObjectMQ omits nulls) reads as false; an unknown field is
		// ignored; no e-mail is the service's to refuse (UserNotFoundException).
		"createShareProposal-objectmq": {method: wire.MethodCreateShareProposal, id: "corr-share-2", async: true,
			parse: parser(wire.ParseCreateShareProposal),
			want:  wire.CreateShareProposalRequest{Common: common("share-2"), ItemID: 1<<53 - 1, Emails: []string{}}},
		"commit": {method: wire.MethodCommit, id: "corr-commit-1", async: true,
			parse: parser(wire.ParseCommit),
			want: protocol.CommitRequest{RequestID: "laptop-1700000000000", UserID: gUser, WorkspaceID: gWS, DeviceID: gDev,
				Items: []domain.ItemMetadata{
					{ID: nil, TempID: i64(7), Version: 1, DeviceID: gDev, WorkspaceID: gWS, ParentID: nil, ParentVersion: nil,
						Status: domain.StatusNew, ModifiedAt: at("2026-11-30T04:05:06.789Z"), Checksum: 0, Chunks: []string{},
						Size: 0, IsFolder: true, Filename: "Documents", Mimetype: "inode/directory"},
					// Omitted fields: ids of no device or workspace, no parentVersion.
					{ID: nil, TempID: i64(8), Version: 1, DeviceID: uuid.Nil, WorkspaceID: uuid.Nil, ParentID: iid(7),
						ParentVersion: nil, Status: domain.StatusNew, ModifiedAt: at("2026-11-30T04:06:00.5Z"),
						Checksum: 2882400018, Chunks: []string{"chk-a", "chk-b"}, Size: 524288, IsFolder: false,
						Filename: "report.pdf", Mimetype: "application/pdf"},
					{ID: iid(4002), TempID: nil, Version: 4, DeviceID: gOtherDv, WorkspaceID: gWS, ParentID: iid(4001),
						ParentVersion: i64(1), Status: domain.StatusRenamed, ModifiedAt: at("2026-11-30T04:07:08.009Z"),
						Checksum: 123, Chunks: []string{"chk-c"}, Size: 3, IsFolder: false, Filename: "renamed.pdf",
						Mimetype: "application/pdf"},
					// Absent checksum and size read as 0, chunks as [], mimetype as "".
					{ID: iid(1<<53 - 1), Version: 6, Status: domain.StatusDeleted, ModifiedAt: at("2026-11-30T04:08:00Z"),
						Checksum: 0, Chunks: []string{}, Size: 0, IsFolder: false, Filename: "gone.txt", Mimetype: ""},
				}}},
	}
}

// TestGoldenRequests decodes every golden request envelope with the method's decoder
// and compares the result with the expected request value, field by field.
func TestGoldenRequests(t *testing.T) {
	cases := requestCases()
	onDisk := goldenFiles(t, "requests")
	for _, name := range onDisk {
		if _, ok := cases[name]; !ok {
			t.Errorf("%s: golden file without a test case; add a case or remove the file", goldenPath("requests", name))
		}
	}
	for _, name := range keys(cases) {
		c := cases[name]
		path := goldenPath("requests", name)
		if !slices.Contains(onDisk, name) {
			t.Errorf("%s: test case without a golden file (request goldens are written by hand)", path)
			continue
		}
		req, err := wire.ParseRequest(readGolden(t, "requests", name))
		if err != nil {
			t.Errorf("%s: envelope: %v", path, err)
			continue
		}
		if req.Method != c.method || req.ID != c.id || req.Async != c.async {
			t.Errorf("%s: envelope method %q id %q async %v, want %q %q %v", path, req.Method, req.ID, req.Async,
				c.method, c.id, c.async)
		}
		got, err := c.parse(req.Params)
		if err != nil {
			t.Errorf("%s: params: %v", path, err)
			continue
		}
		var diffs []string
		diffGo(reflect.TypeOf(c.want).Name(), reflect.ValueOf(c.want), reflect.ValueOf(got), &diffs)
		for _, d := range diffs {
			t.Errorf("%s: %s", path, d)
		}
	}
}

var timeType = reflect.TypeFor[time.Time]()

// diffGo compares two Go values field by field and reports each difference with its
// path. Times compare with Equal (the instant, whatever the offset); a nil slice differs
// from an empty one, and a nil pointer from a pointer to a zero value.
func diffGo(path string, want, got reflect.Value, out *[]string) {
	if want.Type() != got.Type() {
		*out = append(*out, fmt.Sprintf("%s: want a %s, got a %s", path, want.Type(), got.Type()))
		return
	}
	if want.Type() == timeType {
		if w, g := want.Interface().(time.Time), got.Interface().(time.Time); !w.Equal(g) {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, w.Format(time.RFC3339Nano), g.Format(time.RFC3339Nano)))
		}
		return
	}
	switch want.Kind() {
	case reflect.Pointer:
		if want.IsNil() || got.IsNil() {
			if want.IsNil() != got.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, showGo(want), showGo(got)))
			}
			return
		}
		diffGo(path, want.Elem(), got.Elem(), out)
	case reflect.Struct:
		for i := range want.NumField() {
			diffGo(path+"."+want.Type().Field(i).Name, want.Field(i), got.Field(i), out)
		}
	case reflect.Slice:
		if want.IsNil() != got.IsNil() || want.Len() != got.Len() {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, showGo(want), showGo(got)))
			return
		}
		for i := range want.Len() {
			diffGo(fmt.Sprintf("%s[%d]", path, i), want.Index(i), got.Index(i), out)
		}
	default: // numbers, strings, bools, and arrays of them (uuid.UUID)
		if want.Interface() != got.Interface() {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, showGo(want), showGo(got)))
		}
	}
}

func showGo(v reflect.Value) string {
	switch {
	case v.Kind() == reflect.Pointer && v.IsNil():
		return "nil"
	case v.Kind() == reflect.Pointer:
		return "&" + showGo(v.Elem())
	case v.Kind() == reflect.Slice && v.IsNil():
		return "nil slice"
	}
	return fmt.Sprintf("%#v", v.Interface())
}

// TestDiffGo: the request comparison reports what a decoder could get wrong.
func TestDiffGo(t *testing.T) {
	base := protocol.UpdateWorkspaceRequest{RequestID: "r", UserID: gUser, WorkspaceID: gWS, Name: "n", ParentItemID: iid(1)}
	cases := map[string]func(*protocol.UpdateWorkspaceRequest){
		".UserID":       func(r *protocol.UpdateWorkspaceRequest) { r.UserID = gOwner },
		".ParentItemID": func(r *protocol.UpdateWorkspaceRequest) { r.ParentItemID = nil },
		".Name":         func(r *protocol.UpdateWorkspaceRequest) { r.Name = "m" },
	}
	for field, mutate := range cases {
		got := base
		mutate(&got)
		var d []string
		diffGo("R", reflect.ValueOf(base), reflect.ValueOf(got), &d)
		if len(d) != 1 || d[0][:len("R"+field)] != "R"+field {
			t.Errorf("%s changed: %q", field, d)
		}
	}
	item := domain.ItemMetadata{Chunks: []string{}, ModifiedAt: at("2026-01-01T01:00:00+01:00")}
	other := item
	other.Chunks, other.ModifiedAt = nil, at("2026-01-01T00:00:00Z")
	var d []string
	diffGo("I", reflect.ValueOf(item), reflect.ValueOf(other), &d)
	if len(d) != 1 || d[0][:len("I.Chunks")] != "I.Chunks" {
		t.Errorf("nil chunks vs [] (and equal instants): %q", d)
	}
}
