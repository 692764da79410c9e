package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// TestWireFuzz sends thousands of mutated requests of every method through the real
// broker (type swaps, missing and extra fields, huge and negative numbers, long, NUL and
// invalid strings, deep nesting, truncation, random bytes, oversize bodies) and checks
// that the server answers every one that asks for an answer with a known error code
// (never Internal), that the read models catch up, and that ordinary commits of the
// fuzzing user and of another user are still notified (DESIGN invariants 7 and 9).
//
// SYNC_FUZZ_SEED replays a run; SYNC_FUZZ_N sets the number of requests.
func TestWireFuzz(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SYNC_FUZZ_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	n := 3000
	if v := os.Getenv("SYNC_FUZZ_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	t.Logf("SYNC_FUZZ_SEED=%d SYNC_FUZZ_N=%d", seed, n)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	s := newServices(t)
	p := startSyncd(t, s)
	a, b := addUser(t, s, "Fuzzer"), addUser(t, s, "Bystander")
	da, db := dialRaw(t, userURL(t, s, a), a.id), dialRaw(t, userURL(t, s, b), b.id)
	devA, devB := da.register("fuzz-pc"), db.register("calm-pc")
	inA, inB := da.listen(devA), db.listen(devB)
	da.commit(a.workspace, devA, "seed", itemJSON(-1, "dir", true, nil, 0), itemJSON(-2, "f.txt", false, ptr(int64(-1)), 3))
	first, _ := inA.next(15 * time.Second)
	fileID := *first.Items[1].Metadata.ID

	seeds := fuzzSeeds(a, devA, fileID)
	var unanswered []string
	codes := map[string]int{}
	const window = 32
	for sent := 0; sent < n; {
		batch := min(window, n-sent)
		want := map[string]string{} // correlation id → what was sent, for requests that must be answered
		for i := 0; i < batch; i++ {
			body := mutateRequest(rng, seeds[rng.IntN(len(seeds))], sent+i)
			corr := uuid.NewString()
			if mustAnswer(body) {
				want[corr] = fmt.Sprintf("%.200q", body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := da.ch.PublishWithContext(ctx, topology.RPCExchange, topology.RequestQueue, false, false,
				amqp.Publishing{CorrelationId: corr, ReplyTo: da.replyQ, UserId: a.id.String(), Body: body})
			cancel()
			if err != nil {
				t.Fatalf("publish request %d: %v", sent+i, err)
			}
		}
		sent += batch
		deadline := time.After(30 * time.Second)
		for len(want) > 0 {
			select {
			case m := <-da.replies:
				sentBody, ok := want[m.CorrelationId]
				if !ok {
					continue // an async request that failed, answered although not waited for
				}
				delete(want, m.CorrelationId)
				var r wire.Response
				if err := json.Unmarshal(m.Body, &r); err != nil {
					t.Fatalf("reply to %s is not a response: %s", sentBody, m.Body)
				}
				code := "OK"
				if r.Error != nil {
					code = r.Error.Type
				}
				codes[code]++
				if r.Error != nil && os.Getenv("SYNC_FUZZ_DEBUG") != "" {
					msg := r.Error.Message
					if len(msg) > 70 {
						msg = msg[:70]
					}
					codes[code+": "+msg]++
				}
				if !knownCode(code) || code == wire.CodeInternal {
					t.Errorf("request %s answered %s: %+v", sentBody, code, r.Error)
				}
			case <-deadline:
				for _, b := range want {
					unanswered = append(unanswered, b)
				}
				want = nil
			}
		}
	}
	t.Logf("answers by code: %v", codes)
	if len(unanswered) > 0 {
		sort.Strings(unanswered)
		t.Fatalf("%d requests never answered, e.g. %s", len(unanswered), unanswered[0])
	}

	// The service still works for both users, and the read models catch up.
	db.commit(b.workspace, devB, "calm-1", itemJSON(-1, "calm.txt", false, nil, 1))
	if ev := nextOf(t, inB, "calm-1"); !ev.Items[0].CommitSucceed {
		t.Fatalf("bystander's commit failed: %+v", ev.Items[0])
	}
	da.commit(a.workspace, devA, "after-fuzz", itemJSON(-99, "after.txt", false, nil, 1))
	if ev := nextOf(t, inA, "after-fuzz"); !ev.Items[0].CommitSucceed {
		t.Fatalf("fuzzer's ordinary commit failed: %+v", ev.Items[0])
	}
	waitProjectorsCaughtUp(t, p)
	syncctl(t, s, "projections", "verify")
	syncctl(t, s, "audit", "verify", "--all")
}

// nextOf returns the notification of requestID, passing over other events (the fuzzed
// commits that were recorded, and the user events of fuzzed updateWorkspace requests).
func nextOf(t *testing.T, in *inbox, requestID string) wire.CommitNotification {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ev := in.nextEvent(time.Until(deadline))
		if ev.method == "notifyCommit" && ev.commit.RequestID == requestID {
			return ev.commit
		}
	}
	t.Fatalf("no notifyCommit of %s", requestID)
	panic("unreachable")
}

func ptr[T any](v T) *T { return &v }

func knownCode(c string) bool {
	switch c {
	case "OK", wire.CodeInvalidRequest, wire.CodeUnauthorized, wire.CodeUserNotFound, wire.CodeNoWorkspaces,
		wire.CodeWorkspaceNotFound, wire.CodeDeviceNotValid, wire.CodeBusy, wire.CodeInternal, "ResultTooLarge":
		return true
	}
	return false
}

// mustAnswer tells whether the server owes body a reply: every request except an async
// one that may succeed (a well-formed envelope with async true).
func mustAnswer(body []byte) bool {
	var env struct {
		Async json.RawMessage `json:"async"`
	}
	if json.Unmarshal(body, &env) != nil {
		return true
	}
	a := strings.TrimSpace(string(env.Async))
	return a != "true" && a != `"true"`
}

// fuzzSeeds are well-formed requests of every method (sent synchronously, so each is
// answered).
func fuzzSeeds(a account, dev uuid.UUID, item int64) []map[string]any {
	u, ws, d := a.id.String(), a.workspace.String(), dev.String()
	env := func(method string, params map[string]any) map[string]any {
		return map[string]any{"method": method, "params": []any{params}, "id": "x", "async": false}
	}
	file := itemJSON(-7, "fuzz.bin", false, nil, 10)
	file["chunks"] = []any{"c1", "c2"}
	known := map[string]any{"id": item, "version": 2, "status": "CHANGED", "modifiedAt": "2026-01-01T00:00:00.000Z",
		"checksum": 1, "size": 4, "isFolder": false, "filename": "f.txt", "mimetype": "application/octet-stream", "chunks": []any{"c"}, "parentId": nil}
	return []map[string]any{
		env("getAccountInfo", map[string]any{"requestId": "r", "email": a.email}),
		env("updateDevice", map[string]any{"requestId": "r", "userId": u, "deviceId": d, "deviceName": "pc", "os": "linux", "ip": "10.0.0.1", "appVersion": "1"}),
		env("updateDevice", map[string]any{"requestId": "reg", "userId": u, "deviceId": nil, "deviceName": "new", "os": "linux"}),
		env("getWorkspaces", map[string]any{"requestId": "r", "userId": u}),
		env("getChanges", map[string]any{"requestId": "r", "userId": u, "workspaceId": ws}),
		env("getChangesSince", map[string]any{"requestId": "r", "userId": u, "workspaceId": ws, "sinceVersion": 0, "limit": 10}),
		env("getItemVersions", map[string]any{"requestId": "r", "userId": u, "workspaceId": ws, "itemId": item}),
		env("commit", map[string]any{"requestId": "c", "userId": u, "workspaceId": ws, "deviceId": d, "items": []any{file, known}}),
		env("updateWorkspace", map[string]any{"requestId": "r", "userId": u, "workspaceId": ws, "workspaceName": "mine", "parentItemId": nil}),
		env("createShareProposal", map[string]any{"requestId": "r", "userId": u, "itemId": item, "emails": []any{"x@example.com"}, "isEncrypted": false}),
	}
}

// mutateRequest returns a mutated copy of seed, serialized; i makes request ids vary
// so that mutated commits are new requests, not replays.
func mutateRequest(rng *rand.Rand, seed map[string]any, i int) []byte {
	req := deepCopy(seed).(map[string]any)
	if p, ok := req["params"].([]any); ok && len(p) == 1 {
		if o, ok := p[0].(map[string]any); ok {
			o["requestId"] = fmt.Sprintf("fz-%d", i)
		}
	}
	var v any = req
	for k := 1 + rng.IntN(3); k > 0; k-- {
		// Mostly inside the request object, where the methods' own checks are; now and
		// then anywhere in the envelope.
		if p, ok := req["params"].([]any); ok && len(p) == 1 && rng.IntN(5) > 0 {
			p[0] = mutateValue(rng, p[0], 1)
		} else {
			v = mutateValue(rng, v, 0)
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(fmt.Sprint(v))
	}
	switch rng.IntN(40) {
	case 0: // truncation
		body = body[:rng.IntN(len(body)+1)]
	case 1: // random bytes
		body = make([]byte, rng.IntN(512))
		for j := range body {
			body[j] = byte(rng.IntN(256))
		}
	case 2: // invalid UTF-8 inside a string
		if j := bytes.IndexByte(body, '"'); j >= 0 {
			body = append(body[:j+1:j+1], append([]byte{0xff, 0xfe, 0xc3}, body[j+1:]...)...)
		}
	case 3: // deep nesting
		depth := 1000 + rng.IntN(20000)
		nest := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		body = bytes.Replace(body, []byte(`"x"`), []byte(nest), 1)
	}
	if rng.IntN(1000) == 0 { // oversize body
		body = append(body, bytes.Repeat([]byte(" "), wire.MaxBodySize)...)
	}
	return body
}

// mutateValue changes one randomly chosen place of v.
func mutateValue(rng *rand.Rand, v any, depth int) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) > 0 && rng.IntN(10) > 0 { // rarely the whole object
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			k := keys[rng.IntN(len(keys))]
			switch rng.IntN(6) {
			case 0:
				delete(x, k)
			case 1:
				x["extra"+strconv.Itoa(rng.IntN(3))] = fuzzScalar(rng)
			default:
				x[k] = mutateValue(rng, x[k], depth+1)
			}
			return x
		}
	case []any:
		if len(x) > 0 && rng.IntN(6) > 0 {
			j := rng.IntN(len(x))
			switch rng.IntN(6) {
			case 0:
				return append(x[:j:j], x[j+1:]...)
			case 1:
				return append(x, deepCopy(x[j]))
			default:
				x[j] = mutateValue(rng, x[j], depth+1)
			}
			return x
		}
	}
	if rng.IntN(3) > 0 { // most often keep the type, so the request gets past decoding
		switch x := v.(type) {
		case string:
			return fuzzString(rng, x)
		case int, int64, float64, json.Number:
			return []any{0, -1, 1, 1 << 53, -(1 << 53), 1<<31 - 1, 1 << 62, json.Number("9007199254740993")}[rng.IntN(8)]
		case bool:
			return !x
		}
	}
	return fuzzScalar(rng)
}

// fuzzString is a hostile string, often a variation of s.
func fuzzString(rng *rand.Rand, s string) string {
	switch rng.IntN(10) {
	case 0:
		return ""
	case 1:
		return s + "\u0000"
	case 2:
		return strings.Repeat(s+"x", 256/(len(s)+1)+1) // just over 255 bytes
	case 3:
		return strings.Repeat("x", 70000)
	case 4:
		return "/" + s
	case 5:
		return ".."
	case 6:
		return strings.ToUpper(s)
	case 7:
		return uuid.NewString()
	case 8:
		return s + "\U0001F600\u202e"
	}
	return "a\u0000b"
}

// fuzzScalar is a hostile value of any JSON type.
func fuzzScalar(rng *rand.Rand) any {
	switch rng.IntN(16) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return -1
	case 3:
		return 1 << 62
	case 4:
		return json.Number("18446744073709551616") // 2^64
	case 5:
		return json.Number("1e308")
	case 6:
		return -rng.Int64()
	case 7:
		return "\u0000"
	case 8:
		return "a\u0000b"
	case 9:
		return strings.Repeat("x", 70000)
	case 10:
		return strings.Repeat("é", 200)
	case 11:
		return uuid.NewString()
	case 12:
		return []any{}
	case 13:
		return map[string]any{}
	case 14:
		return "2026-13-45T99:99:99Z"
	default:
		return "../" + strconv.Itoa(rng.IntN(100))
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	case []string:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = e
		}
		return s
	}
	return v
}

// waitProjectorsCaughtUp polls syncd's /metrics until every read model's lag is 0.
func waitProjectorsCaughtUp(t *testing.T, p *proc) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + p.http + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		seen := 0
		for _, l := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(l, "syncd_projector_lag_events{") {
				continue
			}
			seen++
			if f := strings.Fields(l); f[len(f)-1] != "0" {
				return fmt.Errorf("not caught up: %s", l)
			}
		}
		if seen == 0 {
			return fmt.Errorf("no syncd_projector_lag_events in /metrics")
		}
		return nil
	})
}
