package wire_test

// Golden files pin the wire format of PROTOCOL.md field by field, independently of the
// structs that encode it:
//
//   - testdata/golden/responses/*.json: the response envelope of every result shape and
//     of every error code, rendered from fixed service and domain values through the real
//     encoding functions (wire.From*, wire.ErrorOf, wire.EncodeResponse);
//   - testdata/golden/events/*.json: notifyCommit event envelopes (wire.EncodeNotifyCommit);
//   - testdata/golden/requests/*.json: request envelopes of every method as a device sends
//     them, which must decode into the expected request values (wire_golden_requests_test.go).
//
// Outputs are compared with their golden as JSON trees (objects by key, arrays by index,
// numbers by their literal text, an absent field apart from a null one), and every
// difference is reported with its path, e.g. $.params[0].usedQuota. Each golden directory
// is iterated on disk: a file without a case fails, and so does a case without a file.
//
// After an intended change of an output, rewrite the response and event goldens with
//
//	go test ./transport/wire -run 'TestGolden(Responses|Events)' -update
//
// and review the diff before committing it: PROTOCOL.md allows additions only, so a
// golden field that changes its name, type or meaning, or disappears, is a protocol break,
// not a golden to refresh. Request goldens are inputs written by hand from PROTOCOL.md;
// -update never rewrites them.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/wire"
)

var update = flag.Bool("update", false, "rewrite the response and event goldens under testdata/golden from the test cases")

const goldenDir = "testdata/golden"

// Fixed values the goldens are built from. Every field of a shape gets a value no other
// field of it has, so that a conversion that puts one field's value into another fails.
var (
	gUser    = uuid.MustParse("1d3e5f70-8192-4a3b-8c5d-6e7f8091a2b3")
	gOwner   = uuid.MustParse("2e4f6071-92a3-4b4c-9d6e-7f8091a2b3c4")
	gWS      = uuid.MustParse("6f1c2a0e-3b7d-4c55-9a8e-0d2f4e6a8b1c")
	gShared  = uuid.MustParse("7a2d3b1f-4c8e-4d66-ab9f-1e3f5a7b9c2d")
	gSecret  = uuid.MustParse("8b3e4c20-5d9f-4e77-bca0-2f4a6b8cad3e")
	gDev     = uuid.MustParse("a1b2c3d4-e5f6-4789-8abc-def012345678")
	gOtherDv = uuid.MustParse("b2c3d4e5-f6a7-4890-9bcd-ef0123456789")
	// gAt has an offset and sub-millisecond digits: the wire renders UTC milliseconds.
	gAt = time.Date(2026, 11, 30, 5, 5, 6, 789_654_321, time.FixedZone("CET", 3600))
)

func iid(v int64) *domain.ItemID { id := domain.ItemID(v); return &id }
func i64(v int64) *int64         { return &v }
func str(s string) *string       { return &s }

// gFolder is a new folder created with a tempId, at the workspace root.
func gFolder() domain.ItemMetadata {
	return domain.ItemMetadata{ID: iid(4001), TempID: i64(-77), Version: 1, DeviceID: gDev, WorkspaceID: gWS,
		Status: domain.StatusNew, ModifiedAt: gAt.Add(-2 * time.Hour), Checksum: 0, Chunks: []string{},
		Size: 0, IsFolder: true, Filename: "Documents", Mimetype: "inode/directory"}
}

// gFile is a file inside gFolder, at version 3, with a parentVersion.
func gFile() domain.ItemMetadata {
	return domain.ItemMetadata{ID: iid(4002), Version: 3, DeviceID: gOtherDv, WorkspaceID: gWS, ParentID: iid(4001),
		ParentVersion: i64(1), Status: domain.StatusChanged, ModifiedAt: gAt.Add(-time.Hour), Checksum: 2882400018,
		Chunks: []string{"chk-a", "chk-b"}, Size: 524288, IsFolder: false, Filename: "report.pdf", Mimetype: "application/pdf"}
}

// gDeleted is a tombstone; its nil chunk list is a stored version's, rendered [].
func gDeleted() domain.ItemMetadata {
	return domain.ItemMetadata{ID: iid(4003), Version: 5, DeviceID: gDev, WorkspaceID: gWS, ParentID: iid(4001),
		ParentVersion: i64(2), Status: domain.StatusDeleted, ModifiedAt: gAt, Checksum: 99, Chunks: nil,
		Size: 0, IsFolder: false, Filename: "gone.txt", Mimetype: "text/plain"}
}

// gVersions is the history of one item with the largest exact id (2^53-1), one version
// per status.
func gVersions() []domain.ItemMetadata {
	const big = 1<<53 - 1
	v := func(ver int64, st domain.Status, parent *domain.ItemID, name string, size int64, chunks []string) domain.ItemMetadata {
		return domain.ItemMetadata{ID: iid(big), Version: ver, DeviceID: gDev, WorkspaceID: gWS, ParentID: parent,
			ParentVersion: nil, Status: st, ModifiedAt: gAt.Add(time.Duration(ver) * time.Minute), Checksum: 1000 + ver,
			Chunks: chunks, Size: size, Filename: name, Mimetype: "text/markdown"}
	}
	first := v(1, domain.StatusNew, nil, "notes.md", 10, []string{"n1"})
	first.TempID = i64(12)
	moved := v(3, domain.StatusMoved, iid(4001), "ideas.md", 10, []string{"n1"})
	moved.ParentVersion = i64(1)
	return []domain.ItemMetadata{
		first,
		v(2, domain.StatusRenamed, nil, "ideas.md", 10, []string{"n1"}),
		moved,
		v(4, domain.StatusChanged, iid(4001), "ideas.md", 2048, []string{"n2", "n3"}),
		v(5, domain.StatusDeleted, iid(4001), "ideas.md", 0, []string{}),
	}
}

// A response case renders a result, or an error (then the stale result must not appear).
type responseCase struct {
	result any
	err    error
	// errIs is the error a device maps the golden's error.type back to (wire.ErrOf).
	errIs error
}

func responseCases() map[string]responseCase {
	_, parseErr := wire.ParseRequest([]byte(`{"method":"getChanges","params":[]}`))
	return map[string]responseCase{
		"getAccountInfo": {result: wire.FromAccount(protocol.Account{UserID: gUser, Name: "Ann Example",
			Email: "ann@example.org", QuotaLimit: 1 << 30, QuotaUsed: 600000})},
		"getAccountInfo-nolimit": {result: wire.FromAccount(protocol.Account{UserID: gOwner, Name: "Bob",
			Email: "bob@example.org", QuotaLimit: 0, QuotaUsed: 7})},
		"updateDevice": {result: gDev.String()},
		"getWorkspaces": {result: wire.FromWorkspaces([]protocol.WorkspaceInfo{
			{ID: gWS, Name: "stacksync", OwnerID: gUser, IsShared: false, IsEncrypted: false, ParentItemID: nil, LatestRevision: 17},
			{ID: gShared, Name: "Shared with Bob", OwnerID: gOwner, IsShared: true, IsEncrypted: false, ParentItemID: iid(4001), LatestRevision: 3},
			{ID: gSecret, Name: "Secret", OwnerID: gUser, IsShared: true, IsEncrypted: true, ParentItemID: iid(4002), LatestRevision: 1},
		})},
		"getChanges":       {result: wire.FromItems([]domain.ItemMetadata{gFolder(), gFile(), gDeleted()})},
		"getChanges-empty": {result: wire.FromItems(nil)},
		"getChangesSince": {result: wire.FromChangesPage(protocol.ChangesPage{
			Items: []domain.ItemMetadata{gFolder(), gFile(), gDeleted()}, FromVersion: 12, ToVersion: 15, HasMore: true, WorkspaceVersion: 17})},
		"getChangesSince-last-empty": {result: wire.FromChangesPage(protocol.ChangesPage{
			Items: nil, FromVersion: 17, ToVersion: 17, HasMore: false, WorkspaceVersion: 17})},
		"getItemVersions":      {result: wire.FromItems(gVersions())},
		"updateWorkspace":      {result: nil}, // void: no result field at all
		"error-InvalidRequest": {err: parseErr, errIs: protocol.ErrInvalid},
		"error-InvalidRequest-service": {err: fmt.Errorf("%w: register device: deviceName of 300 bytes; the limit is 255",
			protocol.ErrInvalid), errIs: protocol.ErrInvalid},
		"error-Unauthorized": {err: fmt.Errorf("userId %s does not match the broker user %s: %w", gUser, gOwner,
			protocol.ErrUnauthorized), errIs: protocol.ErrUnauthorized},
		"error-UserNotFoundException": {err: fmt.Errorf("account carol@example.org: %w", protocol.ErrUserNotFound),
			errIs: protocol.ErrUserNotFound},
		"error-NoWorkspacesFoundException": {err: fmt.Errorf("workspaces of %s: %w", gUser, protocol.ErrNoWorkspaces),
			errIs: protocol.ErrNoWorkspaces},
		"error-WorkspaceNotFound": {err: fmt.Errorf("changes of %s: %w", gShared, protocol.ErrWorkspaceNotFound),
			errIs: protocol.ErrWorkspaceNotFound},
		"error-DeviceNotValidException": {err: fmt.Errorf("commit: device %s: %w", gOtherDv, protocol.ErrDeviceNotValid),
			errIs: protocol.ErrDeviceNotValid},
		"error-Busy": {err: fmt.Errorf("commit r1: %w", &protocol.BusyError{RetryAfter: 1500 * time.Millisecond}),
			errIs: protocol.ErrBusy},
		// A retry-after below a millisecond is rendered as 1, never 0.
		"error-Busy-floor": {err: &protocol.BusyError{RetryAfter: 300 * time.Microsecond}, errIs: protocol.ErrBusy},
		"error-ResultTooLarge": {err: fmt.Errorf("%s: %w: the reply of %d bytes exceeds the limit of %d", wire.MethodGetChanges,
			protocol.ErrResultTooLarge, 70_000_000, 64<<20), errIs: protocol.ErrResultTooLarge},
		// Internal errors never carry their detail.
		"error-Internal": {err: errors.New("append workspace-x@3: connection to 10.0.0.3 refused"), errIs: wire.ErrInternal},
	}
}

func TestGoldenResponses(t *testing.T) {
	cases := responseCases()
	maps.Copy(cases, shareResponseCases())
	checkGoldenDir(t, "responses", keys(cases), func(name string) []byte {
		c := cases[name]
		var e *wire.Error
		result := c.result
		if c.err != nil {
			e = wire.ErrorOf(c.err)
			result = wire.FromItems([]domain.ItemMetadata{gFile()}) // a stale result is never sent
		}
		b, err := wire.EncodeResponse("corr-"+name, result, e)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	})
}

// TestGoldenErrorCodesMapBack: a device reads error.type of each error golden back into
// the error the server rendered it from (wire.ErrOf, the client's side of the table).
func TestGoldenErrorCodesMapBack(t *testing.T) {
	for name, c := range responseCases() {
		if c.err == nil {
			continue
		}
		var resp struct {
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(readGolden(t, "responses", name), &resp); err != nil || resp.Error == nil {
			t.Fatalf("%s: golden has no error object (%v)", name, err)
		}
		if got := wire.ErrOf(resp.Error.Type); !errors.Is(got, c.errIs) {
			t.Errorf("%s: code %q maps back to %v, want %v", name, resp.Error.Type, got, c.errIs)
		}
	}
}

// eventCases are recorded commits, rendered as notifyCommit events.
func eventCases() map[string]domain.Committed {
	folder, file := gFolder(), gFile()
	dup := gDeleted()
	current := gFile()
	current.Version = 4
	longChunks := gFile() // a failed item's chunk list the domain left out: null on the wire
	longChunks.ID, longChunks.Chunks = iid(4010), nil
	failed := func(v int64, r domain.Reason, m *domain.ItemMetadata) domain.ItemOutcome {
		return domain.ItemOutcome{CommittedVersion: v, Succeeded: false, Stored: false, Reason: r, Metadata: m}
	}
	return map[string]domain.Committed{
		"notifyCommit": {
			PrevHash: "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13", WorkspaceID: gWS, WorkspaceVersion: 17,
			RequestID: "laptop-1700000000000", UserID: gUser, DeviceID: gDev, CommittedAt: gAt,
			Items: []domain.ItemOutcome{
				{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &folder},
				{CommittedVersion: 3, Succeeded: true, Stored: true, Metadata: &file},
				{CommittedVersion: 5, Succeeded: true, Stored: false, Metadata: &dup}, // a duplicate re-send
				failed(3, domain.ReasonWrongVersion, &current),
				failed(2, domain.ReasonWrongVersion, &longChunks),
				failed(2, domain.ReasonWrongVersion, nil),
			},
			LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 524288,
		},
		// Every failure reason, no quota limit.
		"notifyCommit-all-failed": {
			WorkspaceID: gShared, WorkspaceVersion: 1, RequestID: "r-failed", UserID: gOwner, DeviceID: gOtherDv,
			CommittedAt: gAt.Add(time.Second).UTC(),
			Items: []domain.ItemOutcome{
				failed(1, domain.ReasonParentNotFound, nil),
				failed(1, domain.ReasonParentNotFolder, nil),
				failed(4, domain.ReasonCycle, &folder),
				failed(1, domain.ReasonInvalidName, nil),
				failed(1, domain.ReasonNameTaken, nil),
				failed(4, domain.ReasonImmutableField, &file),
				failed(1, domain.ReasonQuotaExceeded, nil),
				failed(1, domain.ReasonInvalidItem, nil),
			},
			LimitQuota: 0, UsedQuota: 123, WorkspaceUsed: 0,
		},
	}
}

func TestGoldenEvents(t *testing.T) {
	cases := eventCases()
	shares := shareEventCases()
	checkGoldenDir(t, "events", append(keys(cases), keys(shares)...), func(name string) []byte {
		// The envelope id is the stored event's id, a UUID.
		var b []byte
		var err error
		if share, ok := shares[name]; ok {
			b, err = share(eventID(name))
		} else {
			b, err = wire.EncodeNotifyCommit(eventID(name), cases[name])
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	})
}

// checkGoldenDir compares render(name) with testdata/golden/<dir>/<name>.json for every
// case, and fails for a file without a case and a case without a file. With -update it
// writes the case's output instead (a file without a case still fails).
func checkGoldenDir(t *testing.T, dir string, cases []string, render func(name string) []byte) {
	t.Helper()
	onDisk := goldenFiles(t, dir)
	for _, name := range onDisk {
		if !slices.Contains(cases, name) {
			t.Errorf("%s: golden file without a test case; add a case or remove the file", goldenPath(dir, name))
		}
	}
	for _, name := range cases {
		got := render(name)
		path := goldenPath(dir, name)
		if *update {
			var buf bytes.Buffer
			if err := json.Indent(&buf, got, "", "  "); err != nil {
				t.Fatalf("%s: output is not JSON: %v", name, err)
			}
			buf.WriteByte('\n')
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !slices.Contains(onDisk, name) {
			t.Errorf("%s: test case without a golden file (run with -update to write it)", path)
			continue
		}
		for _, d := range diffJSON(readGolden(t, dir, name), got) {
			t.Errorf("%s: %s", path, d)
		}
	}
}

func goldenPath(dir, name string) string { return filepath.Join(goldenDir, dir, name+".json") }

// goldenFiles lists the golden names (without .json) in a directory; anything else
// there fails the test.
func goldenFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(goldenDir, dir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && *update {
			return nil
		}
		t.Fatalf("golden directory: %v", err)
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if e.IsDir() || !ok {
			t.Errorf("%s: not a golden file (want <case>.json)", filepath.Join(goldenDir, dir, e.Name()))
			continue
		}
		names = append(names, name)
	}
	return names
}

func readGolden(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(goldenPath(dir, name))
	if err != nil {
		t.Fatalf("golden: %v", err)
	}
	return b
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diffJSON compares two JSON documents as trees and returns each difference with its
// path ($ is the root). Numbers compare by their literal text (so 2^53-1 is exact), and
// an absent field differs from a null one.
func diffJSON(golden, got []byte) []string {
	w, err := decodeJSON(golden)
	if err != nil {
		return []string{"golden is not JSON: " + err.Error()}
	}
	g, err := decodeJSON(got)
	if err != nil {
		return []string{"output is not JSON: " + err.Error()}
	}
	var out []string
	diffValue("$", w, g, &out)
	return out
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the value")
	}
	return v, nil
}

func diffValue(path string, want, got any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		names := keys(w)
		for k := range g {
			if _, in := w[k]; !in {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, k := range names {
			p := path + "." + k
			wv, win := w[k]
			gv, gin := g[k]
			switch {
			case !gin:
				*out = append(*out, fmt.Sprintf("%s: golden has %s, output lacks the field", p, show(wv)))
			case !win:
				*out = append(*out, fmt.Sprintf("%s: output has %s, golden lacks the field", p, show(gv)))
			default:
				diffValue(p, wv, gv, out)
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		if len(w) != len(g) {
			*out = append(*out, fmt.Sprintf("%s: golden has %d elements, output %d", path, len(w), len(g)))
		}
		for i := range min(len(w), len(g)) {
			diffValue(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
		return
	default:
		// json.Number, string, bool, nil: comparable, and of different types unequal.
		if want == got {
			return
		}
	}
	*out = append(*out, fmt.Sprintf("%s: golden %s, output %s", path, show(want), show(got)))
}

// show renders a decoded JSON value with its kind, so that 1 and "1" read apart.
func show(v any) string {
	b, _ := json.Marshal(v)
	kind := "null"
	switch v.(type) {
	case map[string]any:
		kind = "object"
	case []any:
		kind = "array"
	case json.Number:
		kind = "number"
	case string:
		kind = "string"
	case bool:
		kind = "bool"
	}
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return kind + " " + s
}

// TestDiffJSON: the comparison the goldens rest on tells apart what a device tells apart.
func TestDiffJSON(t *testing.T) {
	same := [][2]string{
		{`{"a":1,"b":[true,null,"x"]}`, `{"b":[true,null,"x"],"a":1}`},
		{`{"id":9007199254740991}`, `{"id":9007199254740991}`},
	}
	for _, c := range same {
		if d := diffJSON([]byte(c[0]), []byte(c[1])); len(d) != 0 {
			t.Errorf("%s vs %s: %v", c[0], c[1], d)
		}
	}
	differ := []struct{ golden, got, path string }{
		{`{"a":null}`, `{}`, "$.a"},
		{`{}`, `{"a":null}`, "$.a"},
		{`{"a":[]}`, `{"a":null}`, "$.a"},
		{`{"a":1}`, `{"a":"1"}`, "$.a"},
		{`{"a":9007199254740993}`, `{"a":9007199254740992}`, "$.a"},
		{`{"a":[1,2]}`, `{"a":[1]}`, "$.a"},
		{`{"a":[{"b":false}]}`, `{"a":[{"b":0}]}`, "$.a[0].b"},
		{`{"a":{"b":1}}`, `{"a":{"c":1}}`, "$.a.b"},
	}
	for _, c := range differ {
		d := diffJSON([]byte(c.golden), []byte(c.got))
		if len(d) == 0 || !strings.HasPrefix(d[0], c.path+":") {
			t.Errorf("%s vs %s: %q, want a difference at %s", c.golden, c.got, d, c.path)
		}
	}
	if d := diffJSON([]byte(`{} {}`), []byte(`{}`)); len(d) == 0 {
		t.Error("trailing data in a golden accepted")
	}
}
