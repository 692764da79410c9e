package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// createGoldens writes the golden file of an event type that has none yet. It never
// overwrites one: a released golden is never edited.
var createGoldens = flag.Bool("golden.create", false, "write missing golden event files from goldenSamples")

func goldenPath(typ string) string { return filepath.Join("testdata", "events", typ+".json") }

// goldenSamples are the values the goldens were first written from. Add one for a new
// event type, run `go test ./domain -run TestGoldenEvents -golden.create`, commit the file.
func goldenSamples() []Event {
	at := time.Date(2026, 11, 30, 4, 5, 6, 789000000, time.UTC)
	ws := uuid.MustParse("6f1c2a0e-3b7d-4c55-9a8e-0d2f4e6a8b1c")
	usr := uuid.MustParse("1d3e5f70-8192-4a3b-8c5d-6e7f8091a2b3")
	dev := uuid.MustParse("a1b2c3d4-e5f6-4789-8abc-def012345678")
	meta := func(id ItemID, temp *int64, v int64, parent *ItemID, status Status, size int64, chunks []string, name string) *ItemMetadata {
		return &ItemMetadata{ID: &id, TempID: temp, Version: v, DeviceID: dev, WorkspaceID: ws, ParentID: parent,
			ParentVersion: i64(1), Status: status, ModifiedAt: at.Add(-time.Hour), Checksum: 2882400018, Chunks: chunks,
			Size: size, Filename: name, Mimetype: "application/pdf"}
	}
	shared := uuid.MustParse("0c9b8a7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d")
	moved := func(m *ItemMetadata) ItemMetadata {
		c := m.Clone()
		c.WorkspaceID = shared
		if c.ParentID == nil {
			c.ParentVersion = nil
		}
		return c
	}
	folder := &ItemMetadata{ID: iid(4001), TempID: i64(-77), Version: 1, DeviceID: dev, WorkspaceID: ws, Status: StatusNew,
		ModifiedAt: at.Add(-2 * time.Hour), Chunks: []string{}, IsFolder: true, Filename: "Documents", Mimetype: "inode/directory"}
	return []Event{
		WorkspaceCreated{PrevHash: "", WorkspaceID: ws, Name: "stacksync", OwnerID: usr, IsShared: true, IsEncrypted: false, At: at},
		MemberAdded{PrevHash: ChainHash("WorkspaceCreated.v1", []byte("{}")), WorkspaceID: ws, UserID: usr, Name: "Shared with Ann", At: at},
		MemberRemoved{PrevHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", WorkspaceID: ws, UserID: usr, At: at},
		MemberWorkspaceUpdated{PrevHash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", WorkspaceID: ws, UserID: usr,
			RequestID: "laptop-42", Name: "workspace_folder", ParentItemID: iid(4001), At: at},
		Committed{
			PrevHash: "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13", WorkspaceID: ws, WorkspaceVersion: 17,
			RequestID: "laptop-1700000000000", UserID: usr, DeviceID: dev, CommittedAt: at,
			Items: []ItemOutcome{
				{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: folder},
				{CommittedVersion: 3, Succeeded: true, Stored: true, Metadata: meta(4002, nil, 3, iid(4001), StatusChanged, 524288, []string{"chk-a", "chk-b"}, "report.pdf")},
				{CommittedVersion: 2, Succeeded: true, Stored: false, Metadata: meta(4003, nil, 2, nil, StatusRenamed, 10, []string{"chk-c"}, "old.pdf")},
				{CommittedVersion: 5, Succeeded: false, Reason: ReasonWrongVersion, Metadata: meta(4004, nil, 3, nil, StatusDeleted, 0, []string{}, "gone.pdf")},
				{CommittedVersion: 2, Succeeded: false, Reason: ReasonWrongVersion},
			},
			LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 524288,
		},
		UserCreated{PrevHash: "", UserID: usr, Name: "Ann Example", Email: "ann@example.org", QuotaLimit: 1 << 30, At: at},
		UserQuotaChanged{PrevHash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", UserID: usr, QuotaLimit: 0, At: at},
		UserRemoved{PrevHash: "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9", UserID: usr, At: at},
		DeviceRegistered{PrevHash: "baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096", UserID: usr, DeviceID: dev,
			RequestID: "register-1", Name: "laptop", OS: "Linux 6.8", IP: str("192.0.2.10"), AppVersion: nil, At: at},
		DeviceUpdated{PrevHash: "486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7", UserID: usr, DeviceID: dev,
			RequestID: "update-1", Name: "laptop", OS: "Linux 6.9", IP: nil, AppVersion: str("2.1.0"), At: at},
		DeviceRemoved{PrevHash: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", UserID: usr, DeviceID: dev, At: at},
		ItemsMovedOut{PrevHash: "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7", WorkspaceID: ws, WorkspaceVersion: 18,
			RequestID: "share-1", UserID: usr, At: at, ToWorkspaceID: shared, FolderID: 4001, ItemIDs: []ItemID{4002, 4004},
			LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 75712},
		ItemsMovedIn{PrevHash: "b1f51a511f1da0cd348b8f8598db32e61cb963e5fc69e2b41485bf2c3b0a3a0c", WorkspaceID: shared, WorkspaceVersion: 1,
			RequestID: "share-1", UserID: usr, At: at, FromWorkspaceID: ws, FolderID: 4001,
			Items: []MovedItem{
				{ID: 4002, Versions: []ItemMetadata{moved(meta(4002, i64(-3), 1, nil, StatusNew, 524288, []string{"chk-a"}, "report.pdf")),
					moved(meta(4002, nil, 2, nil, StatusChanged, 524288, []string{"chk-a", "chk-b"}, "report.pdf"))}},
				{ID: 4004, Versions: []ItemMetadata{moved(meta(4004, nil, 1, iid(4002), StatusNew, 0, []string{}, "gone.pdf")),
					moved(meta(4004, nil, 2, iid(4002), StatusDeleted, 0, []string{}, "gone.pdf"))}},
			},
			LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 524288},
	}
}

// TestGoldenEvents: every released event type has a golden sample; each decodes,
// re-encodes to the same JSON (no field lost or renamed) and decodes to an equal value.
func TestGoldenEvents(t *testing.T) {
	if *createGoldens {
		for _, e := range goldenSamples() {
			p := goldenPath(e.EventType())
			if _, err := os.Stat(p); err == nil {
				continue
			}
			_, data, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, data, "", "  "); err != nil {
				t.Fatal(err)
			}
			buf.WriteByte('\n')
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", p)
		}
	}
	types := EventTypes()
	slices.Sort(types)
	// The files on disk drive the test: each golden names a known type (a released type
	// is never unregistered), and each known type has a golden.
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		typ, ok := strings.CutSuffix(filepath.Base(f), ".json")
		if !ok {
			t.Errorf("%s: not a golden event file (want <type>.json)", f)
			continue
		}
		onDisk = append(onDisk, typ)
		if !slices.Contains(types, typ) {
			t.Errorf("golden %s has no registered event type (known: %v)", f, types)
		}
	}
	for _, typ := range types {
		if !slices.Contains(onDisk, typ) {
			t.Errorf("registered event type %s has no golden file %s", typ, goldenPath(typ))
		}
	}
	for _, typ := range onDisk {
		t.Run(typ, func(t *testing.T) {
			golden, err := os.ReadFile(goldenPath(typ))
			if err != nil {
				t.Fatal(err)
			}
			e, err := Decode(typ, golden)
			if err != nil {
				t.Fatalf("golden does not decode: %v", err)
			}
			if e.EventType() != typ {
				t.Fatalf("decoded as %s", e.EventType())
			}
			typ2, data, err := Encode(e)
			if err != nil || typ2 != typ {
				t.Fatalf("re-encode: %s %v", typ2, err)
			}
			var a, b any
			if err := json.Unmarshal(golden, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("re-encoded JSON differs from the golden:\n%s\n%s", golden, data)
			}
			e2, err := Decode(typ, data)
			if err != nil || !reflect.DeepEqual(e, e2) {
				t.Fatalf("re-decoded value differs: %v\n%+v\n%+v", err, e, e2)
			}
		})
	}
	// Every sample has a released type, and every released type a sample; each golden
	// still decodes to its sample.
	var sampled []string
	for _, e := range goldenSamples() {
		sampled = append(sampled, e.EventType())
		golden, err := os.ReadFile(goldenPath(e.EventType()))
		if err != nil {
			continue // reported above
		}
		if g, err := Decode(e.EventType(), golden); err != nil || !reflect.DeepEqual(g, e) {
			t.Errorf("golden %s does not decode to its sample: %v\n%+v\n%+v", e.EventType(), err, g, e)
		}
	}
	slices.Sort(sampled)
	if !slices.Equal(sampled, types) {
		t.Fatalf("samples %v, released types %v", sampled, types)
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := Decode("Nope.v1", []byte("{}")); !errors.Is(err, ErrUnknownEventType) {
		t.Fatalf("unknown type: %v", err)
	}
	for _, body := range []string{"{}", " {} \n", "null"} {
		if _, err := Decode(TypeCommitted, []byte(body)); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
	}
	if !slices.IsSorted(EventTypes()) {
		t.Fatalf("EventTypes not sorted")
	}
	for _, body := range []string{"", "[", "{} {}", `{"workspaceVersion":"x"}`, "null x", "{}]", "{} }", "{},"} {
		if _, err := Decode(TypeCommitted, []byte(body)); !errors.Is(err, ErrMalformedEvent) {
			t.Fatalf("%q: %v", body, err)
		}
	}
}
