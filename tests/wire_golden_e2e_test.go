package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/transport/topology"
)

// The wire goldens (transport/wire/testdata/golden) pin the encoders value by value. This
// test pins the server around them: a real syncd is sent the golden request bodies
// (with the golden ids replaced by the test's), and every reply and notifyCommit it
// sends must have the shape of the goldens of its kind: no field the goldens lack, every
// field they always have, and at each path a JSON kind they show there, strings told
// apart as uuid, time (RFC 3339 UTC milliseconds) or other. So a handler that returns a
// service or domain value instead of its wire form, a void method that answers
// "result": null, or a notifier that publishes another envelope fails here.

const wireGoldens = "../transport/wire/testdata/golden"

// The ids the golden files are written with (transport/wire/wire_golden_test.go).
const (
	goldenUser   = "1d3e5f70-8192-4a3b-8c5d-6e7f8091a2b3"
	goldenWS     = "6f1c2a0e-3b7d-4c55-9a8e-0d2f4e6a8b1c"
	goldenShared = "7a2d3b1f-4c8e-4d66-ab9f-1e3f5a7b9c2d"
	goldenDev    = "a1b2c3d4-e5f6-4789-8abc-def012345678"
)

func TestWireGoldenShapesEndToEnd(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	a := addUser(t, s, "Golden")
	d := dialRaw(t, userURL(t, s, a), a.id)
	d.waitWorkspaces()

	// sendGolden sends a golden request with the test's ids and returns the raw reply
	// (nil for an async request, which is answered only on failure).
	var dev uuid.UUID
	sendGolden := func(name string, edit func(string) string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(wireGoldens, "requests", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		body := strings.NewReplacer(goldenUser, a.id.String(), goldenWS, a.workspace.String(),
			goldenShared, a.workspace.String(), goldenDev, dev.String()).Replace(string(b))
		if edit != nil {
			body = edit(body)
		}
		return rawRequest(t, d, []byte(body))
	}
	expect := func(kind, golden string, body []byte) {
		t.Helper()
		for _, p := range shapeDiff(goldenShape(t, kind, golden), body) {
			t.Errorf("%s vs %s goldens: %s\n%s", golden, kind, p, body)
		}
	}
	expectResponse := func(golden string, body []byte) {
		t.Helper()
		var r struct {
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("reply %s: %v", body, err)
		}
		if r.Error != nil {
			t.Fatalf("%s: error reply %s", golden, body)
		}
		expect("responses", golden, body)
	}

	reply := sendGolden("updateDevice-register", nil)
	expectResponse("updateDevice", reply)
	var env struct {
		Result string `json:"result"`
	}
	mustJSON(t, reply, &env)
	dev = uuid.MustParse(env.Result)
	events := rawEvents(t, d, dev)

	expectResponse("updateDevice", sendGolden("updateDevice-update", nil))
	expectResponse("getWorkspaces", sendGolden("getWorkspaces", nil))
	expectResponse("getAccountInfo", sendGolden("getAccountInfo", func(b string) string {
		return strings.Replace(b, "ann@example.org", a.email, 1)
	}))
	expectResponse("getChanges-empty", sendGolden("getChanges", nil))

	// The golden commit creates a folder and a file in it; its two items that name
	// unknown ids fail with null metadata.
	if r := sendGolden("commit", nil); r != nil {
		t.Fatalf("commit answered %s", r)
	}
	ev := events(10 * time.Second)
	expect("events", "notifyCommit", ev)
	var n struct {
		Params []struct {
			Items []struct {
				Metadata *struct {
					ID int64 `json:"id"`
				} `json:"metadata"`
			} `json:"items"`
		} `json:"params"`
	}
	mustJSON(t, ev, &n)
	if len(n.Params) != 1 || len(n.Params[0].Items) != 4 || n.Params[0].Items[1].Metadata == nil {
		t.Fatalf("notifyCommit %s", ev)
	}
	file := n.Params[0].Items[1].Metadata.ID
	// A conflicting re-send of the file's version 1: wrongVersion with the current metadata.
	if r := sendGolden("commit", func(b string) string {
		return strings.Replace(strings.Replace(b, `"requestId": "laptop-1700000000000"`, `"requestId": "second"`, 1),
			`{"tempId": 8, "version": 1, "parentId": 7,`, fmt.Sprintf(`{"id": %d, "version": 1, "parentId": null,`, file), 1)
	}); r != nil {
		t.Fatalf("commit answered %s", r)
	}
	expect("events", "notifyCommit", events(10*time.Second))

	expectResponse("getChanges", sendGolden("getChanges", nil))
	expectResponse("getChangesSince", sendGolden("getChangesSince-default-limit", nil))
	expectResponse("getChangesSince", sendGolden("getChangesSince", func(b string) string {
		return strings.Replace(b, `"sinceVersion": 12`, `"sinceVersion": 1`, 1)
	}))
	expectResponse("getItemVersions", sendGolden("getItemVersions", func(b string) string {
		return strings.Replace(b, "9007199254740991", fmt.Sprint(file), 1)
	}))
	expectResponse("updateWorkspace", sendGolden("updateWorkspace-root", nil))

	// Errors: each reply has the shape of the golden of its code.
	for _, c := range []struct {
		request, code string
		edit          func(string) string
	}{
		{"getChanges", "WorkspaceNotFound", func(b string) string { return strings.Replace(b, a.workspace.String(), uuid.NewString(), 1) }},
		{"getChanges", "InvalidRequest", func(b string) string { return strings.Replace(b, a.workspace.String(), "not-a-uuid", 1) }},
		{"getChanges", "Unauthorized", func(b string) string { return strings.Replace(b, a.id.String(), uuid.NewString(), 1) }},
		{"getAccountInfo", "UserNotFoundException", nil},
	} {
		body := sendGolden(c.request, c.edit)
		var r struct {
			Error *struct {
				Type string `json:"type"`
			} `json:"error"`
		}
		mustJSON(t, body, &r)
		if r.Error == nil {
			t.Fatalf("%s: want error %s, got %s", c.request, c.code, body)
		}
		if r.Error.Type != c.code && !(c.code == "WorkspaceNotFound" && r.Error.Type == "Unauthorized") {
			t.Errorf("%s: error %s, want %s", c.request, r.Error.Type, c.code)
		}
		expect("responses", "error-"+r.Error.Type, body)
	}
}

// rawRequest publishes a request body as the device and returns the reply body. An
// async request gets no reply on success (nil); had it failed, its error reply would
// come before the reply of the next request, which then fails the test.
func rawRequest(t *testing.T, d *rawDevice, body []byte) []byte {
	t.Helper()
	var env struct {
		ID    string `json:"id"`
		Async any    `json:"async"`
	}
	mustJSON(t, body, &env)
	corr := uuid.NewString()
	pub := amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: "ISyncService", CorrelationId: corr,
		ReplyTo: d.replyQ, UserId: d.user.String(), Body: body}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.ch.PublishWithContext(ctx, "rpc_global_exchange", "ISyncService", false, false, pub); err != nil {
		t.Fatal(err)
	}
	if env.Async == true || env.Async == "true" {
		return nil
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-d.replies:
			if !ok {
				t.Fatal("reply channel closed")
			}
			if m.CorrelationId == corr {
				return m.Body
			}
			t.Fatalf("unexpected reply %s", m.Body)
		case <-timeout:
			t.Fatalf("no reply to %s", body)
		}
	}
}

// rawEvents consumes the device's event queue and returns a function that waits for
// the next event body.
func rawEvents(t *testing.T, d *rawDevice, dev uuid.UUID) func(time.Duration) []byte {
	ch, err := d.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(topology.DeviceQueue(d.user, dev), "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(wait time.Duration) []byte {
		t.Helper()
		select {
		case m := <-msgs:
			return m.Body
		case <-time.After(wait):
			t.Fatalf("no event within %v", wait)
		}
		return nil
	}
}

// A shape is what the goldens of one kind show at each path ([] stands for every index):
// the kinds of value, and for objects the fields present in every golden object there
// (required) and in any (allowed).
type shape struct {
	kinds    map[string]map[string]bool
	allowed  map[string]map[string]bool
	required map[string]map[string]bool
}

// goldenShape is the shape of the goldens of a kind (responses, events) whose name is
// name or starts with name + "-" (getChanges takes getChanges-empty in too).
func goldenShape(t *testing.T, kind, name string) shape {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(wireGoldens, kind, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sh := shape{kinds: map[string]map[string]bool{}, allowed: map[string]map[string]bool{}, required: map[string]map[string]bool{}}
	found := false
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		if base != name && !strings.HasPrefix(base, name+"-") {
			continue
		}
		if strings.HasPrefix(name, "error-") != strings.HasPrefix(base, "error-") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := decodeShapeJSON(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sh.add("$", v)
		found = true
	}
	if !found {
		t.Fatalf("no %s golden named %s", kind, name)
	}
	return sh
}

func (sh shape) add(path string, v any) {
	set := func(m map[string]map[string]bool, k string) map[string]bool {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		return m[k]
	}
	set(sh.kinds, path)[kindOf(v)] = true
	switch v := v.(type) {
	case map[string]any:
		allowed := set(sh.allowed, path)
		req, seen := sh.required[path]
		if !seen {
			req = map[string]bool{}
			for k := range v {
				req[k] = true
			}
			sh.required[path] = req
		}
		for k := range req {
			if _, ok := v[k]; !ok {
				delete(req, k)
			}
		}
		for k, e := range v {
			allowed[k] = true
			sh.add(path+"."+k, e)
		}
	case []any:
		for _, e := range v {
			sh.add(path+"[]", e)
		}
	}
}

var (
	reWireTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	reWireUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func kindOf(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "fraction"
		}
		return "integer"
	case string:
		switch {
		case reWireTime.MatchString(v):
			return "time"
		case reWireUUID.MatchString(v):
			return "uuid"
		}
		return "string"
	case bool:
		return "bool"
	}
	return "null"
}

// shapeDiff lists where body departs from the shape.
func shapeDiff(sh shape, body []byte) []string {
	v, err := decodeShapeJSON(body)
	if err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var out []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		k := kindOf(v)
		if !sh.kinds[path][k] {
			out = append(out, fmt.Sprintf("%s: %s, goldens have %s", path, k, keysOf(sh.kinds[path])))
			return
		}
		switch v := v.(type) {
		case map[string]any:
			for f := range sh.required[path] {
				if _, ok := v[f]; !ok {
					out = append(out, fmt.Sprintf("%s.%s: missing, every golden has it", path, f))
				}
			}
			for f, e := range v {
				if !sh.allowed[path][f] {
					out = append(out, fmt.Sprintf("%s.%s: a field no golden has", path, f))
					continue
				}
				walk(path+"."+f, e)
			}
		case []any:
			for _, e := range v {
				walk(path+"[]", e)
			}
		}
	}
	walk("$", v)
	sort.Strings(out)
	return out
}

func keysOf(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return "nothing there"
	}
	return strings.Join(ks, "|")
}

func decodeShapeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}
