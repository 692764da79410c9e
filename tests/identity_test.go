package tests

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// queueDepth returns the number of ready messages in a queue, read with the server's
// (guest) account.
func queueDepth(t *testing.T, s services, q string) int {
	t.Helper()
	conn, err := amqp.Dial(s.amqp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, topologyArgs())
	if err != nil {
		t.Fatalf("inspect queue %s: %v", q, err)
	}
	return info.Messages
}

// topologyArgs are the arguments the server declares device queues with (a passive
// declare ignores them, but keep them equal to be safe).
func topologyArgs() amqp.Table {
	return amqp.Table{"x-expires": int64(topology.DefaultQueueExpiry / time.Millisecond),
		"x-max-length": int64(topology.DefaultQueueMaxLength), "x-overflow": "drop-head"}
}

// PROTOCOL.md §6 and DESIGN invariant 8, end to end: user B, with a real broker account,
// tries every way into user A's workspace. Each is refused by the server (Unauthorized)
// or by the broker (access refused), nothing is stored, and A's devices receive nothing.
func TestIdentityAndAccess(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s) // -auth broker is the default
	a := addUser(t, s, "Alice")
	b := addUser(t, s, "Bob")
	devA := dialRaw(t, userURL(t, s, a), a.id)
	devB := dialRaw(t, userURL(t, s, b), b.id)
	aDevice := devA.register("alice-laptop")
	bDevice := devB.register("bob-laptop")
	aQueue := topology.DeviceQueue(a.id, aDevice)

	// A commits one folder; A's queue receives its notification.
	devA.call("commit", map[string]any{"requestId": "a1", "userId": a.id, "workspaceId": a.workspace, "deviceId": aDevice,
		"items": []any{itemJSON(-1, "docs", true, nil, 0)}}, callOpts{async: true, noReply: true})
	waitDepth(t, s, aQueue, 1)
	var page wire.ChangesPage
	mustJSON(t, devA.ok("getChangesSince", map[string]any{"requestId": "r", "userId": a.id, "workspaceId": a.workspace, "sinceVersion": 0}), &page)
	if page.WorkspaceVersion != 1 || len(page.Items) != 1 {
		t.Fatalf("A's page %+v", page)
	}
	itemID := *page.Items[0].ID

	// The server refuses B on A's workspace.
	ws := map[string]any{"requestId": "b", "userId": b.id, "workspaceId": a.workspace}
	devB.refused("commit", merge(ws, map[string]any{"deviceId": bDevice, "items": []any{itemJSON(-2, "evil", false, nil, 1)}}),
		wire.CodeUnauthorized, callOpts{async: true})
	devB.refused("getChanges", ws, wire.CodeUnauthorized, callOpts{})
	devB.refused("getChangesSince", merge(ws, map[string]any{"sinceVersion": 0}), wire.CodeUnauthorized, callOpts{})
	devB.refused("getItemVersions", merge(ws, map[string]any{"itemId": itemID}), wire.CodeUnauthorized, callOpts{})
	devB.refused("updateWorkspace", merge(ws, map[string]any{"workspaceName": "mine"}), wire.CodeUnauthorized, callOpts{})
	// B commits with A's device into B's own workspace: the device is not B's.
	devB.refused("commit", map[string]any{"requestId": "b2", "userId": b.id, "workspaceId": b.workspace, "deviceId": aDevice,
		"items": []any{itemJSON(-3, "x", false, nil, 1)}}, wire.CodeUnauthorized, callOpts{async: true})
	// B names A in the body: the body must match the broker-verified identity.
	devB.refused("updateDevice", map[string]any{"requestId": "b3", "userId": a.id, "deviceName": "evil", "os": "x"}, wire.CodeUnauthorized, callOpts{})
	devB.refused("getWorkspaces", map[string]any{"requestId": "b4", "userId": a.id}, wire.CodeUnauthorized, callOpts{})
	devB.refused("getAccountInfo", map[string]any{"requestId": "b5", "email": a.email}, wire.CodeUserNotFound, callOpts{})

	// The broker refuses the rest.
	brokerRefuses(t, devB.conn, 406, "forge user_id", func(ch *amqp.Channel) error {
		return ch.PublishWithContext(context.Background(), topology.RPCExchange, topology.RequestQueue, false, false,
			amqp.Publishing{UserId: a.id.String(), Body: []byte(`{}`)})
	})
	brokerRefuses(t, devB.conn, 403, "bind own queue to A's workspace exchange", func(ch *amqp.Channel) error {
		q := "reply." + b.id.String() + ".spy"
		if _, err := ch.QueueDeclare(q, false, true, true, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(q, "", topology.EventExchange(a.workspace), false, nil)
	})
	brokerRefuses(t, devB.conn, 403, "consume A's event queue", func(ch *amqp.Channel) error {
		_, err := ch.Consume(aQueue, "", false, false, false, false, nil)
		return err
	})
	brokerRefuses(t, devB.conn, 403, "publish to A's reply queue", func(ch *amqp.Channel) error {
		return ch.PublishWithContext(context.Background(), "", devA.replyQ, false, false, amqp.Publishing{UserId: b.id.String(), Body: []byte(`{}`)})
	})
	brokerRefuses(t, devB.conn, 403, "declare a queue in A's name", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("reply."+a.id.String()+".x", false, true, true, false, nil)
		return err
	})

	// Nothing was stored, and A's devices received nothing more.
	mustJSON(t, devA.ok("getChangesSince", map[string]any{"requestId": "r2", "userId": a.id, "workspaceId": a.workspace, "sinceVersion": 0}), &page)
	if page.WorkspaceVersion != 1 || len(page.Items) != 1 {
		t.Fatalf("A's workspace changed: %+v", page)
	}
	if n := queueDepth(t, s, aQueue); n != 1 {
		t.Fatalf("A's event queue holds %d messages, want only A's own commit", n)
	}
	// The server confirms a reply before it answers the request that caused it, so
	// anything it sent to A's reply queue is queued ahead of a marker sent now.
	nothingBefore(t, s, devA, "A's reply queue received")

	// A request without user_id (RabbitMQ checks user_id only when it is set) is refused
	// in broker mode and answered to nobody: its reply_to could name anyone's queue.
	srv := dialRaw(t, s.amqp, b.id)
	srv.legacy = true
	if r, err := srv.tryCall("getWorkspaces", map[string]any{"requestId": "n", "userId": b.id}, false, time.Second); err == nil {
		t.Fatalf("a request without user_id was answered: %+v", r)
	}
}

// In trust mode (legacy clients, closed network) the body's userId is the identity.
func TestTrustModeTakesIdentityFromBody(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s, "-auth", "trust")
	a := addUser(t, s, "Carol", "--no-broker-account")
	legacy := dialRaw(t, s.amqp, a.id) // the shared account, as ObjectMQ clients had
	legacy.legacy = true
	var ws []wire.Workspace
	legacy.waitWorkspaces()
	r := legacy.call("getWorkspaces", map[string]any{"requestId": "w", "userId": a.id}, callOpts{})
	if r.Error != nil {
		t.Fatalf("trust mode refused: %+v", r.Error)
	}
	b, _ := json.Marshal(r.Result)
	mustJSON(t, b, &ws)
	if len(ws) != 1 || ws[0].ID != a.workspace.String() || ws[0].IsShared {
		t.Fatalf("workspaces %s", b)
	}
}

// nothingBefore puts a marker in d's reply queue (through the server's own account: a
// device may not publish to the default exchange) and requires it to be the next reply
// d receives: a reply queued before it fails the test as what. A bounded wait for a
// positive control, instead of a look at the channel that would miss a message still on
// its way.
func nothingBefore(t *testing.T, s services, d *rawDevice, what string) {
	t.Helper()
	conn, err := amqp.Dial(s.amqp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	marker := "marker-" + uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "", d.replyQ, true, false, amqp.Publishing{CorrelationId: marker, Body: []byte(marker)}); err != nil {
		t.Fatalf("publish marker: %v", err)
	}
	select {
	case m, ok := <-d.replies:
		if !ok {
			t.Fatalf("%s: reply consumer closed before the marker arrived", what)
		}
		if m.CorrelationId != marker {
			t.Fatalf("%s %s", what, m.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("marker not received within 10s (%s)", what)
	}
}

func waitDepth(t *testing.T, s services, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := queueDepth(t, s, q)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages, want %d", q, got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

var _ = uuid.Nil
