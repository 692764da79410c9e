package legacy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

// Ids of the golden vectors (MANIFEST.md, "Ids used").
var (
	wire1     = uuid.MustParse("5e7a1c00-0000-4000-8000-00000000a001")
	wire1WS   = uuid.MustParse("5e7a1c00-0000-4000-8000-00000000e001")
	regDevice = uuid.MustParse("4091bd3f-7682-4266-8a3f-ae98a4e150c1")
	wire2Dev  = uuid.MustParse("5e7a1c00-0000-4000-8000-00000000d002")
)

const folderID, fileID domain.ItemID = 108113, 108114

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("javaser", "testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func call(t testing.TB, name string) Call {
	t.Helper()
	c, err := DecodeCall(golden(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

// The items of the golden commits (15, 17, 19, 21) as the service's vocabulary has them.
func folderV1() domain.ItemMetadata {
	return domain.ItemMetadata{TempID: ptr(int64(41)), Version: 1, DeviceID: regDevice, WorkspaceID: wire1WS,
		Status: domain.StatusNew, ModifiedAt: ms(1796000000123), Chunks: []string{}, IsFolder: true,
		Filename: "photos", Mimetype: "inode/directory"}
}

func fileV1() domain.ItemMetadata {
	return domain.ItemMetadata{TempID: ptr(int64(42)), Version: 1, DeviceID: regDevice, WorkspaceID: wire1WS,
		ParentID: ptr(domain.ItemID(41)), ParentVersion: ptr(int64(1)), Status: domain.StatusNew,
		ModifiedAt: ms(1796000000123), Checksum: 2882400001, Size: 123456, Filename: "cat.jpg", Mimetype: "image/jpeg",
		Chunks: []string{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "2c26b46b68ffc68ff99b453c1d30413413422d70"}}
}

func fileV2() domain.ItemMetadata {
	m := fileV1()
	m.ID, m.TempID, m.Version, m.ParentID = ptr(fileID), nil, 2, ptr(folderID)
	m.Status, m.ModifiedAt, m.Checksum, m.Size = domain.StatusChanged, ms(1796000002456), 3735928559, 130000
	m.Chunks = []string{"fa26be19de6bff93f70bc2308434e4a440bbad02", "2c26b46b68ffc68ff99b453c1d30413413422d70"}
	return m
}

func fileV2Conflict() domain.ItemMetadata {
	m := fileV2()
	m.ModifiedAt, m.Checksum, m.Size = ms(1796000003789), 4277009102, 140000
	m.Chunks = []string{"c3499c2729730a7f807efb8676a92dcb6f8a3f8f"}
	return m
}

func fileV3Deleted() domain.ItemMetadata {
	m := fileV2()
	m.Version, m.Status, m.ModifiedAt, m.Chunks, m.Size = 3, domain.StatusDeleted, ms(1796000004000), []string{}, 0 // the service stores a deletion with size 0
	return m
}

func withID(m domain.ItemMetadata, id domain.ItemID) domain.ItemMetadata { m.ID = &id; return m }

// Every golden request decodes to the request the service is asked to serve.
func TestGoldenRequests(t *testing.T) {
	commit := func(rid string, items ...domain.ItemMetadata) protocol.CommitRequest {
		return protocol.CommitRequest{RequestID: rid, UserID: wire1, WorkspaceID: wire1WS, DeviceID: regDevice, Items: items}
	}
	cases := []struct {
		file  string
		async bool
		parse func(Call) (any, error)
		want  any
	}{
		{"01-req-getAccountInfo.bin", false, func(c Call) (any, error) { return ParseGetAccount(c) },
			GetAccount{Common{RequestID: "0ce23d64-b3ae-4a76-a686-2300f3604fb5"}, "wire1@example.org"}},
		{"03-req-getAccountInfo-unknown-email.bin", false, func(c Call) (any, error) { r, err := ParseGetAccount(c); return r.Email, err },
			"nobody@example.org"},
		{"05-req-updateDevice-register.bin", false, func(c Call) (any, error) { return ParseUpdateDevice(c) },
			protocol.UpdateDeviceRequest{RequestID: "41c76136-f5e8-40fd-9db4-44752fa8ac59", UserID: wire1, Name: "wirehost", OS: "Linux-amd64"}},
		{"07-req-updateDevice-update.bin", false, func(c Call) (any, error) { return ParseUpdateDevice(c) },
			protocol.UpdateDeviceRequest{RequestID: "5b043821-6cbb-4293-8733-4732f4b24502", UserID: wire1, DeviceID: &regDevice,
				Name: "wirehost", OS: "Linux-amd64"}},
		{"09-req-updateDevice-foreign-device.bin", false, func(c Call) (any, error) { r, err := ParseUpdateDevice(c); return *r.DeviceID, err },
			wire2Dev},
		{"11-req-getWorkspaces.bin", false, func(c Call) (any, error) { return ParseGetWorkspaces(c) },
			Common{RequestID: "c8e9a3cb-1f8d-4d95-9723-e458fc1c7ac0", UserID: &wire1}},
		{"13-req-getChanges-empty.bin", false, func(c Call) (any, error) { return ParseGetChanges(c) },
			GetChanges{Common{RequestID: "8d5a2dbe-8e1d-4a30-8f68-9ca496eb44fb", UserID: &wire1}, wire1WS}},
		{"15-req-commit-new-folder-and-file.bin", true, func(c Call) (any, error) { return ParseCommit(c) },
			commit("wirehost-1796000001000", folderV1(), fileV1())},
		{"17-req-commit-changed.bin", true, func(c Call) (any, error) { return ParseCommit(c) },
			commit("wirehost-1796000002000", fileV2())},
		{"19-req-commit-conflict.bin", true, func(c Call) (any, error) { return ParseCommit(c) },
			commit("wirehost-1796000003000", fileV2Conflict())},
		{"21-req-commit-deleted.bin", true, func(c Call) (any, error) { return ParseCommit(c) },
			commit("wirehost-1796000004000", func() domain.ItemMetadata { m := fileV3Deleted(); m.Size = 130000; return m }())},
		{"23-req-getChanges-nonempty.bin", false, func(c Call) (any, error) { r, err := ParseGetChanges(c); return r.WorkspaceID, err },
			wire1WS},
		{"25-req-updateWorkspace.bin", false, func(c Call) (any, error) { return ParseUpdateWorkspace(c) },
			protocol.UpdateWorkspaceRequest{RequestID: "476adc91-284f-4df7-b328-90ff79e36a59", UserID: wire1, WorkspaceID: wire1WS,
				Name: "default", ParentItemID: ptr(folderID)}},
		{"28-req-createShareProposal.bin", true, func(c Call) (any, error) { return ParseShareProposal(c) },
			ShareProposal{Common{RequestID: "b1523c26-94f1-4007-b608-748f70d36e41", UserID: &wire1}, folderID,
				[]string{"wire2@example.org"}, false}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			cl := call(t, c.file)
			if cl.Async != c.async || !Known(cl.Method) || cl.ID == "" {
				t.Errorf("envelope: %+v", cl)
			}
			got, err := c.parse(cl)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// equal compares by the values the pointers point at.
func equal(a, b any) bool { return show(a) == show(b) }

func show(v any) string {
	var sb strings.Builder
	showTo(&sb, v)
	return sb.String()
}

// Each golden reply and event is what the adapter writes for the same outcome:
// byte-identical where its content is deterministic, else the same object graph
// (ids and times aside, as the golden files hold them).
func TestGoldenReplies(t *testing.T) {
	st := Storage{AuthURL: "http://localhost:5000/v2.0/tokens", Tenant: "stacksync", URL: "http://swift.invalid/v1/AUTH_wire"}
	fileStored := withID(fileV2(), fileID)
	committed := func(rid string, used int64, items ...domain.ItemOutcome) domain.Committed {
		return domain.Committed{WorkspaceID: wire1WS, RequestID: rid, UserID: wire1, DeviceID: regDevice, Items: items,
			LimitQuota: 100 << 30, UsedQuota: used}
	}
	ok := func(v int64, m domain.ItemMetadata) domain.ItemOutcome {
		return domain.ItemOutcome{CommittedVersion: v, Succeeded: true, Stored: true, Metadata: &m}
	}
	fileNew := withID(fileV1(), fileID)
	fileNew.ParentID = ptr(folderID)
	cases := []struct {
		file  string
		exact bool
		build func(id string) ([]byte, error)
	}{
		{"02-resp-getAccountInfo-AccountInfo.bin", true, func(id string) ([]byte, error) {
			return EncodeResponse(id, AccountInfo(protocol.Account{UserID: wire1, Name: "wire1", Email: "wire1@example.org",
				QuotaLimit: 100 << 30}, st), nil)
		}},
		{"06-resp-updateDevice-register-UUID.bin", true, func(id string) ([]byte, error) { return EncodeResponse(id, DeviceID(regDevice), nil) }},
		{"08-resp-updateDevice-update-UUID.bin", true, func(id string) ([]byte, error) { return EncodeResponse(id, DeviceID(regDevice), nil) }},
		{"14-resp-getChanges-empty-list.bin", true, func(id string) ([]byte, error) { return EncodeResponse(id, Changes(nil), nil) }},
		{"27-resp-updateWorkspace-void.bin", true, func(id string) ([]byte, error) { return EncodeResponse(id, nil, nil) }},
		{"26-evt-notifyUpdateWorkspace.bin", true, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyUpdateWorkspace, UpdateWorkspaceNotification(protocol.UpdateWorkspaceRequest{
				RequestID: "476adc91-284f-4df7-b328-90ff79e36a59", UserID: wire1, WorkspaceID: wire1WS, Name: "default", ParentItemID: ptr(folderID)}))
		}},
		{"../golden-extra/29-evt-notifyShareProposal.bin", true, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyShareProposal, ShareProposalNotification(Proposal{
				RequestID: "b1523c26-94f1-4007-b608-748f70d36e41", WorkspaceID: uuid.MustParse("5e7a1c00-0000-4000-8000-00000000e051"),
				FolderName: "photos", FolderID: folderID, OwnerID: wire1, OwnerName: "Wire"}, Storage{URL: "http://swift.example/v1/AUTH_x"}))
		}},
		{"12-resp-getWorkspaces-List.bin", false, func(id string) ([]byte, error) {
			return EncodeResponse(id, Workspaces([]protocol.WorkspaceInfo{{ID: wire1WS, Name: "default", OwnerID: wire1}}, st), nil)
		}},
		{"24-resp-getChanges-2-items.bin", false, func(id string) ([]byte, error) {
			return EncodeResponse(id, Changes([]domain.ItemMetadata{withID(folderV1(), folderID), withID(fileV3Deleted(), fileID)}), nil)
		}},
		{"16-evt-notifyCommit-new-ok.bin", false, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyCommit, CommitNotification(committed("wirehost-1796000001000", 123456,
				ok(1, withID(folderV1(), folderID)), ok(1, fileNew))))
		}},
		{"18-evt-notifyCommit-changed-ok.bin", false, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyCommit, CommitNotification(committed("wirehost-1796000002000", 130000, ok(2, fileStored))))
		}},
		{"20-evt-notifyCommit-conflict-failed.bin", false, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyCommit, CommitNotification(committed("wirehost-1796000003000", 130000,
				domain.ItemOutcome{CommittedVersion: 2, Metadata: &fileStored, Reason: domain.ReasonWrongVersion})))
		}},
		{"22-evt-notifyCommit-deleted-ok.bin", false, func(id string) ([]byte, error) {
			return EncodeEvent(id, MethodNotifyCommit, CommitNotification(committed("wirehost-1796000004000", 0, ok(3, withID(fileV3Deleted(), fileID)))))
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			want := golden(t, c.file)
			wantV, err := js.Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			id := envelopeID(t, wantV)
			got, err := c.build(id)
			if err != nil {
				t.Fatal(err)
			}
			if c.exact {
				if !bytes.Equal(got, want) {
					t.Fatalf("not byte-identical:\n got % x\nwant % x", got, want)
				}
				return
			}
			gotV, err := js.Decode(got)
			if err != nil {
				t.Fatalf("the adapter's own bytes do not decode: %v", err)
			}
			if g, w := normalize(js.Dump(gotV)), normalize(js.Dump(wantV)); g != w {
				t.Errorf("object graph differs\n--- got\n%s--- want\n%s", g, w)
			}
		})
	}
}

// normalize drops what a deployment configures differently from the captured server
// (the Swift container name).
func normalize(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, "swiftContainer = ") {
			l = l[:strings.Index(l, "=")+1] + " <container>"
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func envelopeID(t *testing.T, v js.Value) string {
	t.Helper()
	o := v.(*js.Object)
	id, _, err := js.AsString(o.Get("id"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Error replies name the Java exception the client re-creates (04, 10), with the
// protocol's code in the message.
func TestGoldenErrorReplies(t *testing.T) {
	cases := []struct {
		file, method string
		err          error
	}{
		{"04-resp-getAccountInfo-error-UserNotFoundException.bin", MethodGetAccountInfo, protocol.ErrUserNotFound},
		{"10-resp-updateDevice-error-DeviceNotUpdatedException.bin", MethodUpdateDevice,
			errors.Join(errors.New("device is not the user's"), protocol.ErrUnauthorized)},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			want, err := js.Decode(golden(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			wantErr := want.(*js.Object).Get("error").(*js.Object)
			wantType, _, _ := js.AsString(wantErr.Get("type"))
			exc := ExceptionOf(c.method, c.err)
			if exc.Type != wantType {
				t.Errorf("type %q, want %q", exc.Type, wantType)
			}
			b, err := EncodeResponse(envelopeID(t, want), nil, exc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := js.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			g := strings.Split(js.Dump(got), "\n")
			w := strings.Split(js.Dump(want), "\n")
			if len(g) != len(w) {
				t.Fatalf("shape differs\n%s\n%s", js.Dump(got), js.Dump(want))
			}
			for i := range g { // all but the message line
				if !strings.Contains(w[i], "message = ") && g[i] != w[i] {
					t.Errorf("line %d: %q, want %q", i, g[i], w[i])
				}
			}
		})
	}
}
