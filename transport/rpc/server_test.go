package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func item(tempID int64, name string) map[string]any {
	return map[string]any{"id": nil, "tempId": tempID, "version": 1, "parentId": nil, "status": "NEW",
		"modifiedAt": "2026-01-02T03:04:05.678Z", "checksum": 42, "chunks": []string{"c1"}, "size": 10,
		"isFolder": false, "filename": name, "mimetype": "text/plain"}
}

// register registers a device for e.user through r and returns its id.
func register(t *testing.T, r *raw, user uuid.UUID, requestID string) uuid.UUID {
	t.Helper()
	var id string
	r.ok(wire.MethodUpdateDevice, map[string]any{"requestId": requestID, "userId": user.String(), "deviceId": nil,
		"deviceName": "laptop", "os": "linux"}, &id)
	dev, err := uuid.Parse(id)
	if err != nil {
		t.Fatalf("updateDevice result %q: %v", id, err)
	}
	return dev
}

func TestRoundTrips(t *testing.T) {
	e := newEnv(t, rpc.AuthBroker)
	r := dialRaw(t, e.userURL(e.user), e.user, e.user.String())
	u := e.user.String()

	// getAccountInfo, with the reply's properties and envelope.
	corr := uuid.NewString()
	r.send(request(wire.MethodGetAccountInfo, map[string]any{"requestId": "a1", "email": "alice@example.com"}, false, "env-id-1"), corr, nil)
	d := r.await(corr)
	if d.AppId != "ISyncService" || d.Type != "normalResponse" || d.ContentType != "application/json" || d.CorrelationId != corr {
		t.Errorf("reply properties: app_id=%q type=%q content_type=%q correlation_id=%q", d.AppId, d.Type, d.ContentType, d.CorrelationId)
	}
	resp := decodeResponse(t, d)
	var acct wire.AccountInfo
	if err := json.Unmarshal(resp.Result, &acct); err != nil || acct.UserID != u || acct.Email != "alice@example.com" {
		t.Errorf("getAccountInfo = %s, %v", resp.Result, err)
	}
	if resp.ID != "env-id-1" || resp.IDOmq != "ISyncService" {
		t.Errorf("response id=%q idOmq=%q, want env-id-1, ISyncService", resp.ID, resp.IDOmq)
	}
	if _, ok := resp.keys["error"]; ok {
		t.Errorf("success carries an error key: %s", d.Body)
	}
	r.fails(wire.MethodGetAccountInfo, map[string]any{"requestId": "a2", "email": "bob@example.com"}, wire.CodeUserNotFound)

	// updateDevice: registers, declares and binds the event queue before replying.
	dev := register(t, r, e.user, "reg-1")
	if again := register(t, r, e.user, "reg-1"); again != dev {
		t.Errorf("registering twice with one requestId: %s then %s", dev, again)
	}
	if n, err := queueDepth(t, e.url, topology.DeviceQueue(e.user, dev)); err != nil || n != 0 {
		t.Fatalf("device queue after updateDevice: %d messages, %v", n, err)
	}
	var devID string
	r.ok(wire.MethodUpdateDevice, map[string]any{"requestId": "upd-1", "userId": u, "deviceId": dev.String(),
		"deviceName": "laptop", "os": "linux", "ip": "10.0.0.1", "appVersion": "2.0"}, &devID)
	if devID != dev.String() {
		t.Errorf("update returned %s, want %s", devID, dev)
	}
	r.fails(wire.MethodUpdateDevice, map[string]any{"requestId": "upd-2", "userId": u, "deviceId": uuid.NewString(),
		"deviceName": "laptop", "os": "linux"}, wire.CodeDeviceNotValid)

	// getWorkspaces.
	var wss []wire.Workspace
	r.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w1", "userId": u}, &wss)
	if len(wss) != 1 || wss[0].ID != e.ws.String() || wss[0].Owner.ID != u || wss[0].LatestRevision != 0 {
		t.Fatalf("getWorkspaces = %+v", wss)
	}

	// commit with async=false: a void reply after the commit.
	commit := map[string]any{"requestId": "c1", "userId": u, "workspaceId": e.ws.String(), "deviceId": dev.String(),
		"items": []any{item(7, "a.txt"), item(8, "b.txt")}}
	corr = uuid.NewString()
	r.send(request(wire.MethodCommit, commit, false, corr), corr, nil)
	resp = decodeResponse(t, r.await(corr))
	if resp.Error != nil {
		t.Fatalf("commit: %+v", resp.Error)
	}
	if _, ok := resp.keys["result"]; ok {
		t.Errorf("void reply carries a result key: %v", resp.keys)
	}
	if v := e.svc.WorkspaceVersion(e.ws); v != 1 {
		t.Fatalf("workspace version after commit = %d", v)
	}

	// getChanges, getChangesSince, getItemVersions.
	var items []wire.ItemMetadata
	r.ok(wire.MethodGetChanges, map[string]any{"requestId": "g1", "userId": u, "workspaceId": e.ws.String()}, &items)
	if len(items) != 2 || *items[0].Filename != "a.txt" || items[0].ID == nil || *items[0].DeviceID != dev.String() {
		t.Fatalf("getChanges = %+v", items)
	}
	var page wire.ChangesPage
	r.ok(wire.MethodGetChangesSince, map[string]any{"requestId": "s1", "userId": u, "workspaceId": e.ws.String(), "sinceVersion": 0}, &page)
	if len(page.Items) != 2 || page.FromVersion != 0 || page.ToVersion != 1 || page.HasMore || page.WorkspaceVersion != 1 {
		t.Errorf("getChangesSince = %+v", page)
	}
	var versions []wire.ItemMetadata
	r.ok(wire.MethodGetItemVersions, map[string]any{"requestId": "v1", "userId": u, "workspaceId": e.ws.String(), "itemId": *items[0].ID}, &versions)
	if len(versions) != 1 || *versions[0].Version != 1 {
		t.Errorf("getItemVersions = %+v", versions)
	}

	// updateWorkspace: void.
	resp = r.ok(wire.MethodUpdateWorkspace, map[string]any{"requestId": "u1", "userId": u, "workspaceId": e.ws.String(),
		"workspaceName": "Home", "parentItemId": nil}, nil)
	if _, ok := resp.keys["result"]; ok {
		t.Errorf("updateWorkspace reply carries a result key: %v", resp.keys)
	}
	r.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w2", "userId": u}, &wss)
	if wss[0].Name != "Home" || wss[0].LatestRevision != 1 {
		t.Errorf("after updateWorkspace: %+v", wss[0])
	}

	// createShareProposal (PROTOCOL.md §8 rule 1): request-level errors on reply_to. A
	// file of the caller's personal workspace and an id that names no item are
	// InvalidRequest; nothing is appended either way. (service/share_test.go covers
	// Unauthorized, tests/share_test.go shares that succeed, against syncd.)
	e.svc.AddUser(uuid.New(), "bob", "bob@example.com")
	r.fails(wire.MethodCreateShareProposal, map[string]any{"requestId": "p1", "userId": u, "itemId": *items[0].ID,
		"emails": []string{"bob@example.com"}}, wire.CodeInvalidRequest)
	r.fails(wire.MethodCreateShareProposal, map[string]any{"requestId": "p2", "userId": u, "itemId": 999_999,
		"emails": []string{"bob@example.com"}}, wire.CodeInvalidRequest) // names no item (§8 rule 1)
	if v := e.svc.WorkspaceVersion(e.ws); v != 1 {
		t.Fatalf("workspace version after refused shares = %d", v)
	}
	if n := e.mets.count("getChanges/OK"); n != 1 {
		t.Errorf("metrics getChanges/OK = %d, want 1", n)
	}
}

// TestDeviceQueueBindings checks that updateDevice declares the device's queue bound to
// the user's exchange, and to no workspace's: those bindings are the binder's (it
// follows membership in the global order; see transport/notify).
func TestDeviceQueueBindings(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust)
	shared := e.svc.AddWorkspace(uuid.New(), "team")
	e.svc.AddMember(shared, e.user)
	r := dialRaw(t, e.url, e.user, "")
	dev := register(t, r, e.user, "reg")
	for _, ex := range []uuid.UUID{e.ws, shared, e.user} {
		if err := r.ch.ExchangeDeclare(topology.EventExchange(ex), amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := r.ch.PublishWithContext(context.Background(), topology.EventExchange(ex), "", false, false, amqp.Publishing{Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		n, err := queueDepth(t, e.url, topology.DeviceQueue(e.user, dev))
		if err == nil && n != 1 {
			err = fmt.Errorf("device queue has %d messages, want 1 (the user exchange's only)", n)
		}
		return err
	})
}

func TestBadInputIsAnsweredAndAcked(t *testing.T) {
	e := newEnv(t, rpc.AuthBroker)
	r := dialRaw(t, e.userURL(e.user), e.user, e.user.String())
	u := e.user.String()
	dev := register(t, r, e.user, "reg")
	before := len(e.svc.Calls())

	big := make([]byte, wire.MaxBodySize+1)
	for i := range big {
		big[i] = ' '
	}
	copy(big, `{"method":"getWorkspaces","params":[{"requestId":"x","userId":"`+u+`"}]}`)
	invalid := map[string][]byte{
		"not json":           []byte("\x00\xffnot json"),
		"not an object":      []byte(`[1,2,3]`),
		"empty":              nil,
		"unknown method":     request("dropTables", map[string]any{"requestId": "x"}, false, "1"),
		"wrong type":         request(wire.MethodGetWorkspaces, map[string]any{"requestId": 5, "userId": u}, false, "1"),
		"missing field":      request(wire.MethodGetChanges, map[string]any{"requestId": "x", "userId": u}, false, "1"),
		"non-uuid":           request(wire.MethodGetChanges, map[string]any{"requestId": "x", "userId": u, "workspaceId": "ws-1"}, false, "1"),
		"bad async":          []byte(`{"method":"getWorkspaces","params":[{"requestId":"x","userId":"` + u + `"}],"id":"1","async":"maybe"}`),
		"two params":         []byte(`{"method":"getWorkspaces","params":[{},{}],"id":"1"}`),
		"commit no items":    request(wire.MethodCommit, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String(), "deviceId": dev.String(), "items": []any{}}, false, "1"),
		"item no version":    request(wire.MethodCommit, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String(), "deviceId": dev.String(), "items": []any{map[string]any{"status": "NEW"}}}, true, "1"),
		"requestId too long": request(wire.MethodGetWorkspaces, map[string]any{"requestId": strings.Repeat("x", 129), "userId": u}, false, "1"),
		"body too large":     big,
	}
	for name, body := range invalid {
		corr := uuid.NewString()
		r.send(body, corr, nil)
		resp := decodeResponse(t, r.await(corr))
		if resp.Error == nil || resp.Error.Type != wire.CodeInvalidRequest {
			t.Errorf("%s: got %+v, want InvalidRequest", name, resp.Error)
		}
	}
	if n := len(e.svc.Calls()); n != before {
		t.Errorf("malformed requests reached the service: %d calls", n-before)
	}
	// A request is counted after its reply is sent: poll.
	testenv.Eventually(t, 5*time.Second, func() error {
		if e.mets.count("invalid/InvalidRequest") == 0 || e.mets.count("unknown/InvalidRequest") != 1 {
			return fmt.Errorf("metrics: %v", e.mets)
		}
		return nil
	})

	// The service's own checks.
	r.fails(wire.MethodGetChanges, map[string]any{"requestId": "x", "userId": u, "workspaceId": uuid.NewString()}, wire.CodeWorkspaceNotFound)
	r.fails(wire.MethodCommit, map[string]any{"requestId": "x", "userId": u, "workspaceId": uuid.NewString(), "deviceId": dev.String(), "items": []any{item(1, "a")}}, wire.CodeWorkspaceNotFound)
	r.fails(wire.MethodCommit, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String(), "deviceId": uuid.NewString(), "items": []any{item(1, "a")}}, wire.CodeUnauthorized)
	r.fails(wire.MethodUpdateDevice, map[string]any{"requestId": "x", "userId": u, "deviceId": uuid.NewString(), "deviceName": "d", "os": "linux"}, wire.CodeDeviceNotValid)
	if v := e.svc.WorkspaceVersion(e.ws); v != 0 {
		t.Errorf("refused commits changed the workspace: version %d", v)
	}

	// A panicking or failing service gives Internal without its detail, and a Busy
	// service carries retryAfterMs.
	e.svc.SetHook(func(ctx context.Context, c rpctest.Call) error {
		switch c.Method {
		case "Changes":
			panic("boom")
		case "ItemVersions":
			return errors.New("disk on fire")
		case "ChangesSince":
			return &protocol.BusyError{RetryAfter: 300 * time.Millisecond}
		}
		return nil
	})
	resp := r.fails(wire.MethodGetChanges, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String()}, wire.CodeInternal)
	if strings.Contains(resp.Error.Message, "boom") {
		t.Errorf("panic detail on the wire: %q", resp.Error.Message)
	}
	r.fails(wire.MethodGetItemVersions, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String(), "itemId": 1}, wire.CodeInternal)
	resp = r.fails(wire.MethodGetChangesSince, map[string]any{"requestId": "x", "userId": u, "workspaceId": e.ws.String(), "sinceVersion": 0}, wire.CodeBusy)
	if resp.Error.RetryAfterMs == nil || *resp.Error.RetryAfterMs != 300 {
		t.Errorf("busy retryAfterMs = %v", resp.Error.RetryAfterMs)
	}
	e.svc.SetHook(nil)

	// An async request that fails as a whole is answered on its reply_to; one without
	// reply_to is acked silently.
	corr := uuid.NewString()
	r.send(request(wire.MethodCommit, map[string]any{"requestId": "y", "userId": u, "workspaceId": uuid.NewString(), "deviceId": dev.String(), "items": []any{item(1, "a")}}, true, corr), corr, nil)
	if resp := decodeResponse(t, r.await(corr)); resp.Error == nil || resp.Error.Type != wire.CodeWorkspaceNotFound {
		t.Errorf("async commit to an unknown workspace: %+v", resp.Error)
	}
	invalidBefore, okBefore := e.mets.count("invalid/InvalidRequest"), e.mets.count("getWorkspaces/OK")
	r.send([]byte("garbage"), uuid.NewString(), func(p *amqp.Publishing) { p.ReplyTo = "" })
	r.send(request(wire.MethodGetWorkspaces, map[string]any{"requestId": "x", "userId": u}, false, "1"), uuid.NewString(),
		func(p *amqp.Publishing) { p.ReplyTo = ""; p.ContentType = "" })

	// The consumer is not wedged, and nothing is left in the queue, unacked included:
	// after the server stops, unacked messages would be back in the queue.
	var wss []wire.Workspace
	r.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": u}, &wss)
	testenv.Eventually(t, 5*time.Second, func() error {
		if e.mets.count("invalid/InvalidRequest") != invalidBefore+1 || e.mets.count("getWorkspaces/OK") != okBefore+2 {
			return fmt.Errorf("requests without reply_to not handled yet: %v", e.mets)
		}
		return nil
	})
	e.srv.Close()
	if n, err := queueDepth(t, e.url, topology.RequestQueue); err != nil || n != 0 {
		t.Errorf("request queue after stop: %d messages, %v", n, err)
	}
}

func TestIdentity(t *testing.T) {
	t.Run("broker", func(t *testing.T) {
		e := newEnv(t, rpc.AuthBroker)
		u := e.user.String()
		params := map[string]any{"requestId": "w", "userId": u}

		// Requests without a verified user id are refused, and answered to nobody (a
		// reply_to could name another user's queue); the metrics show the refusals.
		guest := dialRaw(t, e.url, e.user, "")
		guest.send(request(wire.MethodGetWorkspaces, params, false, "1"), uuid.NewString(), nil)
		guest.send(request(wire.MethodGetAccountInfo, map[string]any{"requestId": "a", "email": "alice@example.com"}, false, "2"), uuid.NewString(), nil)
		// Check order: a malformed request is InvalidRequest before identity.
		guest.send(request(wire.MethodGetChanges, params, false, "3"), uuid.NewString(), nil)
		// user_id matching the login, but the login is not a user id.
		asGuest := dialRaw(t, e.url, e.user, testenv.AMQPUser())
		asGuest.send(request(wire.MethodGetWorkspaces, params, false, "4"), uuid.NewString(), nil)
		testenv.Eventually(t, 5*time.Second, func() error {
			if e.mets.count("getWorkspaces/Unauthorized") != 2 || e.mets.count("getAccountInfo/Unauthorized") != 1 ||
				e.mets.count("getChanges/InvalidRequest") != 1 {
				return fmt.Errorf("refusals so far: %v", e.mets)
			}
			return nil
		})
		// The refusals are counted after their replies (had there been any) were
		// confirmed by the broker, so a marker sent now queues behind them.
		for _, r := range []*raw{guest, asGuest} {
			nothingBefore(t, r.ch, r.replies, "", r.replyQ, "an unverified request was answered")
		}

		// A real user's verified user_id with another user's id in the body.
		mallory := uuid.New()
		e.svc.AddUser(mallory, "mallory", "mallory@example.com")
		m := dialRaw(t, e.userURL(mallory), mallory, mallory.String())
		m.fails(wire.MethodGetWorkspaces, params, wire.CodeUnauthorized)
		m.fails(wire.MethodGetAccountInfo, map[string]any{"requestId": "a", "email": "alice@example.com"}, wire.CodeUserNotFound)
		m.fails(wire.MethodGetChanges, map[string]any{"requestId": "c", "userId": mallory.String(), "workspaceId": e.ws.String()}, wire.CodeUnauthorized)
		var wss []wire.Workspace
		m.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": mallory.String()}, &wss)
		if len(wss) != 1 || wss[0].Owner.ID != mallory.String() {
			t.Errorf("mallory's workspaces: %+v", wss)
		}
		if n := e.svc.CountCalls("Workspaces", ""); n != 1 {
			t.Errorf("unauthorized requests reached the service: %d Workspaces calls", n)
		}
		if e.mets.count("getWorkspaces/Unauthorized") != 3 {
			t.Errorf("metrics: %v", e.mets)
		}
	})
	t.Run("trust", func(t *testing.T) {
		e := newEnv(t, rpc.AuthTrust)
		guest := dialRaw(t, e.url, e.user, "")
		var wss []wire.Workspace
		guest.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": e.user.String()}, &wss)
		if len(wss) != 1 {
			t.Errorf("trust mode getWorkspaces: %+v", wss)
		}
		var acct wire.AccountInfo
		guest.ok(wire.MethodGetAccountInfo, map[string]any{"requestId": "a", "email": "alice@example.com"}, &acct)
		if acct.UserID != e.user.String() {
			t.Errorf("trust mode account: %+v", acct)
		}
		// A verified user id is still checked in trust mode.
		other := uuid.New()
		e.svc.AddUser(other, "o", "o@example.com")
		o := dialRaw(t, e.userURL(other), other, other.String())
		o.fails(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": e.user.String()}, wire.CodeUnauthorized)
	})
}

func TestCommitAsyncAndReplay(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust)
	r := dialRaw(t, e.url, e.user, "")
	u := e.user.String()
	dev := register(t, r, e.user, "reg")

	// A spy queue on the workspace's exchange sees what the server publishes.
	spy, q := spyQueue(t, r, e.ws)
	events, err := spy.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	commit := map[string]any{"requestId": "c1", "userId": u, "workspaceId": e.ws.String(), "deviceId": dev.String(), "items": []any{item(1, "a")}}
	// async commit with async as the string "true": no reply, one event in the store.
	corr := uuid.NewString()
	body := []byte(strings.Replace(string(request(wire.MethodCommit, commit, true, corr)), `"async":true`, `"async":"true"`, 1))
	r.send(body, corr, nil)
	testenv.Eventually(t, 5*time.Second, func() error {
		if e.mets.count("commit/OK") != 1 {
			return errors.New("commit not handled yet")
		}
		return nil
	})
	// A sync round trip afterwards: the only reply that arrives is its own.
	r.ok(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": u}, nil)
	nothingBefore(t, r.ch, r.replies, "", r.replyQ, "unexpected reply")
	if len(r.stash) != 0 {
		t.Errorf("a successful async commit was answered: %v", r.stash)
	}
	res, ok := e.svc.CommitResultOf(e.ws, "c1")
	if !ok || e.svc.WorkspaceVersion(e.ws) != 1 {
		t.Fatalf("commit not recorded")
	}

	// The same requestId again (another body): nothing new, the original notification
	// is republished to multi#<workspace>.
	commit["items"] = []any{item(2, "other")}
	corr = uuid.NewString()
	r.send(request(wire.MethodCommit, commit, false, corr), corr, nil)
	if resp := decodeResponse(t, r.await(corr)); resp.Error != nil {
		t.Fatalf("replayed commit: %+v", resp.Error)
	}
	if v := e.svc.WorkspaceVersion(e.ws); v != 1 {
		t.Errorf("replay changed the workspace: version %d", v)
	}
	var ev amqp.Delivery
	select {
	case ev = <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification republished")
	}
	if ev.AppId != e.ws.String() || ev.DeliveryMode != amqp.Persistent || ev.ReplyTo != "" || ev.CorrelationId == "" {
		t.Errorf("event properties: app_id=%q delivery_mode=%d reply_to=%q", ev.AppId, ev.DeliveryMode, ev.ReplyTo)
	}
	var env struct {
		Method string                    `json:"method"`
		Params []wire.CommitNotification `json:"params"`
		ID     string                    `json:"id"`
		Async  any                       `json:"async"`
	}
	if err := json.Unmarshal(ev.Body, &env); err != nil {
		t.Fatalf("event body: %v", err)
	}
	if env.Method != "notifyCommit" || env.ID != res.EventID.String() || env.Async != true || len(env.Params) != 1 {
		t.Fatalf("event envelope: %s", ev.Body)
	}
	n := env.Params[0]
	if n.RequestID != "c1" || n.WorkspaceVersion != 1 || len(n.Items) != 1 || *n.Items[0].Metadata.Filename != "a" {
		t.Errorf("republished notification: %+v", n)
	}
	// The republish was confirmed before the reply: a second one would be queued ahead
	// of a marker published now.
	nothingBefore(t, spy, events, topology.EventExchange(e.ws), "", "a second event")
}

// nothingBefore publishes a marker to exchange/key (where from must receive it) and
// requires it to be the next delivery of from: whatever was queued for from before the
// marker fails the test as what. A bounded wait for a positive control, instead of a
// look at the channel that would miss a message still on its way.
func nothingBefore(t *testing.T, ch *amqp.Channel, from <-chan amqp.Delivery, exchange, key, what string) {
	t.Helper()
	marker := "marker-" + uuid.NewString()
	if err := ch.PublishWithContext(context.Background(), exchange, key, false, false,
		amqp.Publishing{CorrelationId: marker, Body: []byte(marker)}); err != nil {
		t.Fatalf("publish marker: %v", err)
	}
	select {
	case d, ok := <-from:
		if !ok {
			t.Fatalf("%s: consumer closed before the marker arrived", what)
		}
		if d.CorrelationId != marker {
			t.Fatalf("%s: %s", what, d.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("marker not received within 10s (%s)", what)
	}
}

func TestReconnectsAfterConnectionLoss(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust)
	r := dialRaw(t, e.url, e.user, "")
	params := map[string]any{"requestId": "w", "userId": e.user.String()}
	r.ok(wire.MethodGetWorkspaces, params, nil)
	testenv.Eventually(t, 30*time.Second, func() error {
		n, err := rpctest.CloseConnections(testenv.ManagementURL(), e.url, e.name)
		if err == nil && n == 0 {
			err = errors.New("server connection not listed yet")
		}
		return err
	})
	// The request queue is not durable-bound to the server: a request sent while the
	// server reconnects waits in the queue and is served afterwards.
	r.ok(wire.MethodGetWorkspaces, params, nil)
	testenv.Eventually(t, 30*time.Second, func() error {
		n, err := rpctest.CloseConnections(testenv.ManagementURL(), e.url, e.name)
		if err == nil && n == 0 {
			err = errors.New("server did not reconnect")
		}
		return err
	})
	r.ok(wire.MethodGetWorkspaces, params, nil)
	if n := e.svc.CountCalls("Workspaces", ""); n != 3 {
		t.Errorf("Workspaces calls = %d, want 3", n)
	}
}

func TestCloseFinishesInFlightRequests(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust)
	r := dialRaw(t, e.url, e.user, "")
	entered := make(chan struct{})
	e.svc.SetHook(func(ctx context.Context, c rpctest.Call) error {
		if c.Method == "Workspaces" {
			close(entered)
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	corr := uuid.NewString()
	r.send(request(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": e.user.String()}, false, corr), corr, nil)
	<-entered
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if resp := decodeResponse(t, r.await(corr)); resp.Error != nil {
		t.Errorf("in-flight request after Close: %+v", resp.Error)
	}
	if n, err := queueDepth(t, e.url, topology.RequestQueue); err != nil || n != 0 {
		t.Errorf("request queue after Close: %d, %v", n, err)
	}
	if err := e.srv.Run(context.Background()); !errors.Is(err, rpc.ErrClosed) {
		t.Errorf("Run after Close = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (&rpc.Config{}).Validate(); err == nil {
		t.Error("empty URL accepted")
	}
	c := rpc.Config{URL: "amqp://x"}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.RequestQueue != topology.RequestQueue || c.Concurrency != 32 || c.Prefetch != 64 || c.RequestTimeout != 30*time.Second || c.Auth != rpc.AuthBroker {
		t.Errorf("defaults: %+v", c)
	}
	if err := (&rpc.Config{URL: "amqp://x", Auth: 7}).Validate(); err == nil {
		t.Error("unknown auth mode accepted")
	}
}

// TestConcurrencyIsBounded: with Concurrency 2, eight requests delivered at once run
// two at a time. The handlers block until the test releases them one by one, so the
// limit is reached for certain and never depends on timing.
func TestConcurrencyIsBounded(t *testing.T) {
	const limit, total = 2, 8
	// Every request is delivered at once (Prefetch), and the handlers are held as long
	// as the test needs (RequestTimeout).
	e := newEnv(t, rpc.AuthTrust, func(c *rpc.Config) {
		c.Concurrency, c.Prefetch, c.RequestTimeout = limit, total, time.Minute
	})
	r := dialRaw(t, e.url, e.user, "")
	var mu sync.Mutex
	running, peak, entered := 0, 0, 0
	release := make(chan struct{})
	e.svc.SetHook(func(ctx context.Context, c rpctest.Call) error {
		mu.Lock()
		running++
		entered++
		peak = max(peak, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	state := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return running, peak, entered
	}
	var corrs []string
	for range total {
		corr := uuid.NewString()
		corrs = append(corrs, corr)
		r.send(request(wire.MethodGetWorkspaces, map[string]any{"requestId": corr, "userId": e.user.String()}, false, corr), corr, nil)
	}
	// Every request has reached the server (none is ready in the queue) and the limit
	// is taken: the other six wait in the server, not in the broker.
	testenv.Eventually(t, 10*time.Second, func() error {
		n, err := queueDepth(t, e.url, topology.RequestQueue)
		if err != nil {
			return err
		}
		if run, _, _ := state(); n != 0 || run != limit {
			return fmt.Errorf("%d requests ready in the queue, %d handlers running", n, run)
		}
		return nil
	})
	// Each release ends one handler, which lets exactly one waiting request in.
	for i := range total {
		release <- struct{}{}
		want := min(limit+i+1, total)
		testenv.Eventually(t, 10*time.Second, func() error {
			if _, _, in := state(); in != want {
				return fmt.Errorf("%d handlers entered after %d releases, want %d", in, i+1, want)
			}
			return nil
		})
	}
	for _, corr := range corrs {
		if resp := decodeResponse(t, r.await(corr)); resp.Error != nil {
			t.Errorf("request %s: %+v", corr, resp.Error)
		}
	}
	if _, p, in := state(); p != limit || in != total {
		t.Errorf("peak concurrency %d (of %d handled), want %d", p, in, limit)
	}
}

// TestShutdownCutOffLeavesRequestQueued: a request still running when ShutdownTimeout
// ends is neither answered nor acked, so it is served again after a restart.
func TestShutdownCutOffLeavesRequestQueued(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust, func(c *rpc.Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	r := dialRaw(t, e.url, e.user, "")
	entered := make(chan struct{}, 1)
	e.svc.SetHook(func(ctx context.Context, c rpctest.Call) error {
		if c.Method == "Workspaces" {
			entered <- struct{}{}
			<-ctx.Done() // stuck until cut off
			return ctx.Err()
		}
		return nil
	})
	corr := uuid.NewString()
	r.send(request(wire.MethodGetWorkspaces, map[string]any{"requestId": "w", "userId": e.user.String()}, false, corr), corr, nil)
	<-entered
	e.srv.Close()
	testenv.Eventually(t, 5*time.Second, func() error {
		n, err := queueDepth(t, e.url, topology.RequestQueue)
		if err == nil && n != 1 {
			err = fmt.Errorf("request queue holds %d messages, want the abandoned one", n)
		}
		return err
	})
	e.svc.SetHook(nil)
	rpctest.StartServer(t, rpc.Config{URL: e.url, Auth: rpc.AuthTrust}, e.svc)
	if resp := decodeResponse(t, r.await(corr)); resp.Error != nil {
		t.Errorf("redelivered request: %+v", resp.Error)
	}
}

// Replies go through the default exchange to any queue: a caller must not be able to
// aim them at a device event queue (flooding it would push real events out) or at
// another user's reply queue.
func TestReplyOnlyToTheCallersReplyQueues(t *testing.T) {
	e := newEnv(t, rpc.AuthBroker)
	r := dialRaw(t, e.userURL(e.user), e.user, e.user.String())
	admin := dialRaw(t, e.url, e.user, "")
	victim := uuid.New()
	targets := []string{topology.DeviceQueue(victim, uuid.New()), "reply." + victim.String() + ".inbox"}
	for _, q := range targets {
		if _, err := admin.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	params := map[string]any{"requestId": "w", "userId": e.user.String()}
	for _, q := range targets {
		r.send(request(wire.MethodGetWorkspaces, params, false, "1"), uuid.NewString(), func(p *amqp.Publishing) { p.ReplyTo = q })
	}
	// A normal request after them is answered (the two were handled and acked) ...
	r.ok(wire.MethodGetWorkspaces, params, nil)
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := e.mets.count("getWorkspaces/OK"); n < 3 {
			return fmt.Errorf("%d getWorkspaces handled", n)
		}
		return nil
	})
	// ... and nothing reached the foreign queues.
	for _, q := range targets {
		if n, err := queueDepth(t, e.url, q); err != nil || n != 0 {
			t.Errorf("queue %s received %d replies (%v)", q, n, err)
		}
	}
}

func TestConsumingReportsTheSession(t *testing.T) {
	e := newEnv(t, rpc.AuthTrust)
	testenv.Eventually(t, 5*time.Second, func() error {
		if !e.srv.Consuming() {
			return errors.New("a started server does not report consuming")
		}
		return nil
	})
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if e.srv.Consuming() {
			return errors.New("a closed server still reports consuming")
		}
		return nil
	})
}
