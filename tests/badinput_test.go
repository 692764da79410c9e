package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// DESIGN invariant 7 end to end: bad input gets a clear error, is acknowledged, never
// wedges the consumer or loops, and changes nothing stored.
func TestBadInputChangesNothing(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	a := addUser(t, s, "Kim")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("kim-pc")
	d.commit(a.workspace, dev, "good", itemJSON(-1, "ok.txt", false, nil, 1))
	waitVersion(t, d, a.workspace, 1)

	raw := func(body string) *wire.Response {
		t.Helper()
		corr := uuid.NewString()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.ch.PublishWithContext(ctx, topology.RPCExchange, topology.RequestQueue, false, false,
			amqp.Publishing{CorrelationId: corr, ReplyTo: d.replyQ, UserId: a.id.String(), Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-d.replies:
				if m.CorrelationId != corr {
					continue
				}
				var r wire.Response
				mustJSON(t, m.Body, &r)
				return &r
			case <-time.After(15 * time.Second):
				t.Fatalf("no reply to %.80q", body)
			}
		}
	}
	ws, dv := a.workspace.String(), dev.String()
	commit := func(items string) string {
		return `{"method":"commit","async":false,"params":[{"requestId":"bad","userId":"` + a.id.String() +
			`","workspaceId":"` + ws + `","deviceId":"` + dv + `","items":` + items + `}]}`
	}
	cases := map[string]struct{ body, code string }{
		"not JSON":           {`{"method": "commit", "params": [`, wire.CodeInvalidRequest},
		"not an envelope":    {`[1,2,3]`, wire.CodeInvalidRequest},
		"unknown method":     {`{"method":"dropAllTables","params":[{}]}`, wire.CodeInvalidRequest},
		"two params":         {`{"method":"getWorkspaces","params":[{},{}]}`, wire.CodeInvalidRequest},
		"wrong type":         {`{"method":"getWorkspaces","params":[{"requestId":7,"userId":"` + a.id.String() + `"}]}`, wire.CodeInvalidRequest},
		"missing field":      {`{"method":"getChanges","params":[{"requestId":"x","userId":"` + a.id.String() + `"}]}`, wire.CodeInvalidRequest},
		"non-UUID workspace": {`{"method":"getChanges","params":[{"requestId":"x","userId":"` + a.id.String() + `","workspaceId":"nope"}]}`, wire.CodeInvalidRequest},
		"unknown workspace":  {`{"method":"getChanges","params":[{"requestId":"x","userId":"` + a.id.String() + `","workspaceId":"` + uuid.NewString() + `"}]}`, wire.CodeWorkspaceNotFound},
		"item without name":  {commit(`[{"version":1,"status":"NEW","modifiedAt":"2026-01-01T00:00:00Z","isFolder":false}]`), wire.CodeInvalidRequest},
		"items not a list":   {commit(`"everything"`), wire.CodeInvalidRequest},
		"unknown device":     {strings.Replace(commit(`[`+mustMarshal(itemJSON(-5, "x", false, nil, 1))+`]`), dv, uuid.NewString(), 1), wire.CodeUnauthorized},
		"oversize body":      {`{"method":"getWorkspaces","params":[{"pad":"` + strings.Repeat("x", wire.MaxBodySize) + `"}]}`, wire.CodeInvalidRequest},
		"share (not yet)":    {`{"method":"createShareProposal","params":[{"requestId":"s","userId":"` + a.id.String() + `"}]}`, wire.CodeInvalidRequest},
		"since out of range": {`{"method":"getChangesSince","params":[{"requestId":"x","userId":"` + a.id.String() + `","workspaceId":"` + ws + `","sinceVersion":-4}]}`, wire.CodeInvalidRequest},
		"limit out of range": {`{"method":"getChangesSince","params":[{"requestId":"x","userId":"` + a.id.String() + `","workspaceId":"` + ws + `","sinceVersion":0,"limit":100000}]}`, wire.CodeInvalidRequest},
		"requestId too long": {`{"method":"getWorkspaces","params":[{"requestId":"` + strings.Repeat("r", 129) + `","userId":"` + a.id.String() + `"}]}`, wire.CodeInvalidRequest},
	}
	for name, c := range cases {
		r := raw(c.body)
		if r.Error == nil || r.Error.Type != c.code {
			t.Errorf("%s: got %+v, want %s", name, r.Error, c.code)
		}
	}
	// A bad request without reply_to cannot be answered; it must still be acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.ch.PublishWithContext(ctx, topology.RPCExchange, topology.RequestQueue, false, false,
		amqp.Publishing{UserId: a.id.String(), Body: []byte("garbage")}); err != nil {
		t.Fatal(err)
	}
	// The consumer is not wedged, the queue drains, and nothing was stored.
	p := d.changesSince(a.workspace, 0)
	if p.WorkspaceVersion != 1 || len(p.Items) != 1 {
		t.Fatalf("bad input changed the workspace: %+v", p)
	}
	waitDepth0(t, s, topology.RequestQueue)
}

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// waitDepth0 waits until a (non-durable) queue holds no ready or unacknowledged message.
func waitDepth0(t *testing.T, s services, q string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := execCommand("rabbitmqctl", "-q", "list_queues", "--no-table-headers", "-p", vhostOf(t, s.amqp), "name", "messages")
		if err != nil {
			t.Fatalf("list queues: %v: %s", err, out)
		}
		busy := false
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[0] == q && f[1] != "0" {
				busy = true
			}
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s never drained: %s", q, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
