package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// inbox consumes a device's event queue.
type inbox struct {
	t  *testing.T
	ch <-chan amqp.Delivery
}

// listen consumes the device queue of (d.user, device) on the device's connection.
func (d *rawDevice) listen(device uuid.UUID) *inbox {
	d.t.Helper()
	ch, err := d.conn.Channel()
	if err != nil {
		d.t.Fatal(err)
	}
	msgs, err := ch.Consume(topology.DeviceQueue(d.user, device), "", true, false, false, false, nil)
	if err != nil {
		d.t.Fatalf("consume own event queue: %v", err)
	}
	return &inbox{t: d.t, ch: msgs}
}

// next returns the next notifyCommit, failing after timeout.
func (in *inbox) next(timeout time.Duration) (wire.CommitNotification, amqp.Delivery) {
	in.t.Helper()
	select {
	case m, ok := <-in.ch:
		if !ok {
			in.t.Fatal("event queue consumer closed")
		}
		var ev struct {
			Method string                    `json:"method"`
			Params []wire.CommitNotification `json:"params"`
			Async  bool                      `json:"async"`
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil || ev.Method != "notifyCommit" || len(ev.Params) != 1 || !ev.Async {
			in.t.Fatalf("not a notifyCommit event: %s (%v)", m.Body, err)
		}
		return ev.Params[0], m
	case <-time.After(timeout):
		in.t.Fatalf("no notifyCommit within %v", timeout)
	}
	panic("unreachable")
}

// none requires that no event arrives within d.
func (in *inbox) none(d time.Duration) {
	in.t.Helper()
	select {
	case m := <-in.ch:
		in.t.Fatalf("unexpected event %s", m.Body)
	case <-time.After(d):
	}
}

// waitWorkspaceCount polls getWorkspaces until the user has n workspaces.
func (d *rawDevice) waitWorkspaceCount(n int) []wire.Workspace {
	d.t.Helper()
	var ws []wire.Workspace
	testenv.Eventually(d.t, 15*time.Second, func() error {
		r := d.call("getWorkspaces", map[string]any{"requestId": "w", "userId": d.user}, callOpts{})
		if r.Error != nil {
			return fmt.Errorf("%s", r.Error.Message)
		}
		b, _ := json.Marshal(r.Result)
		if err := json.Unmarshal(b, &ws); err != nil {
			return err
		}
		if len(ws) != n {
			return fmt.Errorf("%d workspaces, want %d", len(ws), n)
		}
		return nil
	})
	return ws
}

// commit publishes a commit (async, no reply expected on success).
func (d *rawDevice) commit(ws, device uuid.UUID, requestID string, items ...map[string]any) {
	d.t.Helper()
	its := make([]any, len(items))
	for i, it := range items {
		its[i] = it
	}
	// Async, as devices send it: the outcome arrives as notifyCommit (tests check it
	// there); only a failure of the whole request would be answered.
	d.call("commit", map[string]any{"requestId": requestID, "userId": d.user, "workspaceId": ws, "deviceId": device, "items": its},
		callOpts{async: true, noReply: true})
}

// changesSince reads a whole workspace history page by page.
func (d *rawDevice) changesSince(ws uuid.UUID, since int64) wire.ChangesPage {
	d.t.Helper()
	var p wire.ChangesPage
	mustJSON(d.t, d.ok("getChangesSince", map[string]any{"requestId": "cs", "userId": d.user, "workspaceId": ws, "sinceVersion": since}), &p)
	return p
}

func (d *rawDevice) changes(ws uuid.UUID) []wire.ItemMetadata {
	d.t.Helper()
	var items []wire.ItemMetadata
	mustJSON(d.t, d.ok("getChanges", map[string]any{"requestId": "gc", "userId": d.user, "workspaceId": ws}), &items)
	return items
}

// next version of an item in wire form.
func nextVersion(m wire.ItemMetadata, status string, size int64) map[string]any {
	out := map[string]any{"id": *m.ID, "version": *m.Version + 1, "status": status, "modifiedAt": "2026-01-02T00:00:00.000Z",
		"checksum": *m.Checksum + 1, "size": size, "isFolder": *m.IsFolder, "filename": *m.Filename, "mimetype": *m.Mimetype,
		"chunks": []string{"c" + fmt.Sprint(*m.Version+1)}, "parentId": m.ParentID}
	return out
}

// closeVhostConnections closes every client connection of the test's vhost: to every
// process on it, the broker went away. It returns how many connections were open.
func closeVhostConnections(t *testing.T, s services) int {
	t.Helper()
	vhost := vhostOf(t, s.amqp)
	out, err := execCommand("rabbitmqctl", "-q", "list_connections", "--no-table-headers", "-p", vhost, "name")
	if err != nil {
		t.Fatalf("list connections: %v: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	if out, err := execCommand("rabbitmqctl", "-q", "close_all_connections", "--vhost", vhost, "--limit", "1000", "test: broker outage"); err != nil {
		t.Fatalf("close connections: %v: %s", err, out)
	}
	return n
}

// versions returns the sorted distinct workspace versions of notifications.
func versions(ns []wire.CommitNotification) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, n := range ns {
		if !seen[n.WorkspaceVersion] {
			seen[n.WorkspaceVersion] = true
			out = append(out, n.WorkspaceVersion)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

var _ = context.Background
