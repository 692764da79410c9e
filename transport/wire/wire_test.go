package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, c := range codes {
		if got := CodeOf(fmt.Errorf("wrapped: %w", c.err)); got != c.code {
			t.Errorf("CodeOf(%v) = %s, want %s", c.err, got, c.code)
		}
		if got := ErrOf(c.code); !errors.Is(got, c.err) {
			t.Errorf("ErrOf(%s) = %v, want %v", c.code, got, c.err)
		}
	}
	if got := CodeOf(errors.New("disk on fire")); got != CodeInternal {
		t.Errorf("unknown error maps to %s, want Internal", got)
	}
	if e := ErrorOf(errors.New("secret detail")); strings.Contains(e.Message, "secret") {
		t.Errorf("internal error leaks its detail: %q", e.Message)
	}
	e := ErrorOf(&protocol.BusyError{RetryAfter: 250 * time.Millisecond})
	if e.Type != CodeBusy || e.RetryAfterMs == nil || *e.RetryAfterMs != 250 {
		t.Errorf("busy error = %+v", e)
	}
}

func TestParseRequestEnvelope(t *testing.T) {
	ok := []struct {
		body  string
		async bool
	}{
		{`{"method":"getChanges","params":[{}],"id":"1","async":false}`, false},
		{`{"method":"commit","params":[{}],"id":"1","async":true}`, true},
		{`{"method":"commit","params":[{}],"id":"1","async":"true"}`, true},
		{`{"method":"commit","params":[{}],"id":"1","async":"false"}`, false},
		{`{"method":"commit","params":[{}],"id":"1","unknownField":[1,2]}`, false},
	}
	for _, c := range ok {
		r, err := ParseRequest([]byte(c.body))
		if err != nil || r.Async != c.async {
			t.Errorf("ParseRequest(%s) = %+v, %v", c.body, r, err)
		}
	}
	bad := []string{
		``, `null`, `[]`, `"x"`, `{`, `{"params":[{}]}`, `{"method":"x","params":[]}`,
		`{"method":"x","params":[{},{}]}`, `{"method":"x","params":[1]}`, `{"method":1,"params":[{}]}`,
		`{"method":"x","params":[{}],"async":"yes"}`, `{"method":"x","params":[{}],"id":5}`,
		`{"method":"x","params":[{}]} trailing`,
	}
	for _, b := range bad {
		if _, err := ParseRequest([]byte(b)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRequest(%q) err = %v, want InvalidRequest", b, err)
		}
	}
	big := `{"method":"x","params":[{"pad":"` + strings.Repeat("a", MaxBodySize) + `"}]}`
	if _, err := ParseRequest([]byte(big)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversize body accepted: %v", err)
	}
}

func TestParseCommit(t *testing.T) {
	ws, user, dev := uuid.New(), uuid.New(), uuid.New()
	good := fmt.Sprintf(`{"requestId":"r1","userId":"%s","workspaceId":"%s","deviceId":"%s","items":[
		{"id":null,"tempId":7,"version":1,"status":"NEW","modifiedAt":"2026-01-02T03:04:05.678+02:00","checksum":0,
		 "size":0,"isFolder":true,"filename":"docs","mimetype":"inode/directory","isRoot":false}]}`, user, ws, dev)
	req, err := ParseCommit(json.RawMessage(good))
	if err != nil {
		t.Fatal(err)
	}
	if req.UserID != user || req.WorkspaceID != ws || req.DeviceID != dev || len(req.Items) != 1 {
		t.Fatalf("parsed %+v", req)
	}
	it := req.Items[0]
	if it.ID != nil || *it.TempID != 7 || !it.IsFolder || it.Chunks == nil || it.ModifiedAt.UTC().Hour() != 1 {
		t.Fatalf("item %+v", it)
	}
	bad := map[string]string{
		"non-uuid workspace": strings.Replace(good, ws.String(), "not-a-uuid", 1),
		"missing device":     strings.Replace(good, `"deviceId":"`+dev.String()+`",`, "", 1),
		"string version":     strings.Replace(good, `"version":1`, `"version":"1"`, 1),
		"missing filename":   strings.Replace(good, `"filename":"docs",`, "", 1),
		"bad time":           strings.Replace(good, `2026-01-02T03:04:05.678+02:00`, `yesterday`, 1),
		"fractional size":    strings.Replace(good, `"size":0`, `"size":0.5`, 1),
		"empty requestId":    strings.Replace(good, `"requestId":"r1"`, `"requestId":""`, 1),
		"long requestId":     strings.Replace(good, `"requestId":"r1"`, `"requestId":"`+strings.Repeat("x", 129)+`"`, 1),
		"no items":           fmt.Sprintf(`{"requestId":"r","userId":"%s","workspaceId":"%s","deviceId":"%s","items":[]}`, user, ws, dev),
		"items not a list":   fmt.Sprintf(`{"requestId":"r","userId":"%s","workspaceId":"%s","deviceId":"%s","items":{}}`, user, ws, dev),
	}
	for name, body := range bad {
		if _, err := ParseCommit(json.RawMessage(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want InvalidRequest", name, err)
		}
	}
}

func TestParseGetChangesSinceLimits(t *testing.T) {
	base := fmt.Sprintf(`{"requestId":"r","userId":"%s","workspaceId":"%s","sinceVersion":%%d%%s}`, uuid.New(), uuid.New())
	r, err := ParseGetChangesSince(json.RawMessage(fmt.Sprintf(base, 3, "")))
	if err != nil || r.SinceVersion != 3 || r.Limit != DefaultChangesLimit {
		t.Fatalf("%+v %v", r, err)
	}
	for _, tail := range []string{`,"limit":0`, `,"limit":10001`, `,"limit":"5"`} {
		if _, err := ParseGetChangesSince(json.RawMessage(fmt.Sprintf(base, 0, tail))); !errors.Is(err, ErrInvalid) {
			t.Errorf("limit %s accepted: %v", tail, err)
		}
	}
	if _, err := ParseGetChangesSince(json.RawMessage(fmt.Sprintf(base, -1, ""))); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative sinceVersion accepted")
	}
}

func TestResponseOmitsNullResult(t *testing.T) {
	b, err := EncodeResponse("c1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "result") || !strings.Contains(string(b), `"idOmq":"ISyncService"`) {
		t.Fatalf("void response = %s", b)
	}
	b, _ = EncodeResponse("c1", []int{}, &Error{Type: CodeUnauthorized, Message: "no"})
	if strings.Contains(string(b), "result") || !strings.Contains(string(b), `"type":"Unauthorized"`) {
		t.Fatalf("error response = %s", b)
	}
}

func TestNotifyCommitShape(t *testing.T) {
	id := domain.ItemID(42)
	c := domain.Committed{WorkspaceID: uuid.New(), WorkspaceVersion: 3, RequestID: "r", UserID: uuid.New(), DeviceID: uuid.New(),
		CommittedAt: time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("x", 3600)),
		Items: []domain.ItemOutcome{
			{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &domain.ItemMetadata{ID: &id, Version: 1, Status: domain.StatusNew, Filename: "a"}},
			{CommittedVersion: 5, Reason: domain.ReasonWrongVersion},
		}}
	b, err := EncodeNotifyCommit("ev1", c)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["async"] != true || got["method"] != "notifyCommit" || got["id"] != "ev1" {
		t.Fatalf("envelope %s", b)
	}
	n := got["params"].([]any)[0].(map[string]any)
	if n["committedAt"] != "2026-01-02T02:04:05.678Z" || n["workspaceVersion"] != float64(3) {
		t.Fatalf("notification %s", b)
	}
	items := n["items"].([]any)
	if _, has := items[0].(map[string]any)["stored"]; has {
		t.Fatalf("internal field leaked: %s", b)
	}
	if items[1].(map[string]any)["reason"] != "wrongVersion" || items[1].(map[string]any)["metadata"] != nil {
		t.Fatalf("failed item %s", b)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"method":"commit","params":[{"requestId":"r","items":[]}],"id":"1","async":true}`))
	f.Add([]byte(`{"method":"getChanges","params":[{}],"async":"false"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		// No decoder of a request object may panic on any params.
		_, _ = ParseCommit(r.Params)
		_, _ = ParseGetChangesSince(r.Params)
		_, _ = ParseUpdateDevice(r.Params)
		_, _ = ParseUpdateWorkspace(r.Params)
		_, _ = ParseGetItemVersions(r.Params)
		_, _ = ParseGetAccountInfo(r.Params)
	})
}

// A failed item's chunk list omitted by the domain (nil) is rendered as null; every
// other chunk list, also an empty or nil one of a stored version, as a list.
func TestCommitInfoNullChunks(t *testing.T) {
	id := domain.ItemID(42)
	meta := func(chunks []string) *domain.ItemMetadata {
		return &domain.ItemMetadata{ID: &id, Version: 1, Status: domain.StatusNew, Filename: "a", Chunks: chunks}
	}
	c := domain.Committed{Items: []domain.ItemOutcome{
		{CommittedVersion: 3, Reason: domain.ReasonWrongVersion, Metadata: meta(nil)},
		{CommittedVersion: 3, Reason: domain.ReasonWrongVersion, Metadata: meta([]string{})},
		{CommittedVersion: 3, Reason: domain.ReasonWrongVersion, Metadata: meta([]string{"c1"})},
		{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: meta(nil)},
	}}
	b, err := json.Marshal(FromCommitted(c))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Items []struct {
			Metadata struct {
				Chunks json.RawMessage `json:"chunks"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`null`, `[]`, `["c1"]`, `[]`} {
		if s := string(got.Items[i].Metadata.Chunks); s != want {
			t.Errorf("item %d: chunks %s, want %s", i, s, want)
		}
	}
	if b, _ := json.Marshal(FromItems([]domain.ItemMetadata{*meta(nil)})); !strings.Contains(string(b), `"chunks":[]`) {
		t.Errorf("a stored version renders %s, want chunks []", b)
	}
}

// Request fields out of the bounds of PROTOCOL.md §3 are InvalidRequest with a message
// naming the field and the limit: refused by the wire (requestId) or by the domain
// (through the service's ErrInvalid).
func TestRequestFieldBoundsAreInvalidRequest(t *testing.T) {
	user := uuid.New()
	// (Invalid UTF-8 never arrives: encoding/json decodes it as U+FFFD.)
	body := fmt.Sprintf(`{"requestId":"r\u0000","userId":"%s"}`, user)
	if _, err := ParseGetWorkspaces(json.RawMessage(body)); !errors.Is(err, ErrInvalid) {
		t.Errorf("requestId with NUL: %v, want InvalidRequest", err)
	}
	err := fmt.Errorf("%w: register device: %w", protocol.ErrInvalid, domain.CheckText("deviceName", strings.Repeat("x", 70000), domain.MaxLabelBytes))
	if e := ErrorOf(err); e.Type != CodeInvalidRequest || !strings.Contains(e.Message, "deviceName") ||
		!strings.Contains(e.Message, "limit is 255") || len(e.Message) > 300 {
		t.Errorf("error %+v", e)
	}
	err = fmt.Errorf("%w: %w", protocol.ErrInvalid, domain.ErrEventTooLarge)
	if e := ErrorOf(err); e.Type != CodeInvalidRequest || !strings.Contains(e.Message, "split it") {
		t.Errorf("event too large: %+v", e)
	}
}
