package tests

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

var reUUID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// sharedWorkspace creates a shared workspace of owner and adds members via syncctl.
func sharedWorkspace(t *testing.T, s services, owner account, name string, members ...account) uuid.UUID {
	t.Helper()
	out := syncctl(t, s, "workspace", "create", "--owner", owner.id.String(), "--name", name)
	ws := uuid.MustParse(reUUID.FindString(out))
	for _, m := range members {
		syncctl(t, s, "workspace", "add-member", "--workspace", ws.String(), "--user", m.id.String())
	}
	return ws
}

// The product's main path, end to end through syncd, RabbitMQ and PostgreSQL: two
// devices of one user and a device of another member; a commit reaches the others as
// notifyCommit and shows in getChanges; conflicts; tempId chains; a retried commit; a
// device offline while others commit catches up from its queue and getChangesSince.
func TestSyncEndToEnd(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	alice := addUser(t, s, "Alice")
	bob := addUser(t, s, "Bob")
	ws := sharedWorkspace(t, s, alice, "Family", bob)

	a1 := dialRaw(t, userURL(t, s, alice), alice.id)
	a2 := dialRaw(t, userURL(t, s, alice), alice.id)
	b1 := dialRaw(t, userURL(t, s, bob), bob.id)
	a1.waitWorkspaceCount(2)
	b1.waitWorkspaceCount(2)
	dA1, dA2, dB1 := a1.register("a1"), a2.register("a2"), b1.register("b1")
	inA1, inA2, inB1 := a1.listen(dA1), a2.listen(dA2), b1.listen(dB1)

	// A tempId chain: a folder, a file in it, and the file's second version, in one commit.
	folderTemp := int64(-10)
	f := itemJSON(-11, "notes.txt", false, &folderTemp, 5)
	f2 := itemJSON(-11, "notes.txt", false, &folderTemp, 7)
	f2["version"], f2["status"] = 2, "CHANGED"
	a1.commit(ws, dA1, "c1", itemJSON(folderTemp, "docs", true, nil, 0), f, f2)
	for name, in := range map[string]*inbox{"a1": inA1, "a2": inA2, "b1": inB1} {
		n, m := in.next(10 * time.Second)
		if n.WorkspaceVersion != 1 || n.RequestID != "c1" || len(n.Items) != 3 || m.AppId != ws.String() || m.Type != "gson" {
			t.Fatalf("%s got %+v (app_id %s)", name, n, m.AppId)
		}
		for i, it := range n.Items {
			if !it.CommitSucceed {
				t.Fatalf("%s: item %d failed: %+v", name, i, it)
			}
		}
	}
	items := b1.changes(ws)
	if len(items) != 2 || *items[0].Filename != "docs" || *items[1].Version != 2 || *items[1].ParentID != *items[0].ID {
		t.Fatalf("getChanges = %+v", items)
	}
	file := items[1]

	// A conflict: a2 and b1 both send version 3; exactly one wins and the loser gets the
	// winner's metadata.
	a2.commit(ws, dA2, "a2-v3", nextVersion(file, "CHANGED", 100))
	b1.commit(ws, dB1, "b1-v3", nextVersion(file, "CHANGED", 200))
	var results []wire.CommitNotification
	for range 2 {
		n, _ := inA1.next(10 * time.Second)
		results = append(results, n)
	}
	wins := 0
	for _, n := range results {
		if n.Items[0].CommitSucceed {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d of two conflicting commits won: %+v", wins, results)
	}
	loser := results[1]
	if results[1].Items[0].CommitSucceed {
		loser = results[0]
	}
	if loser.Items[0].Reason != string(domain.ReasonWrongVersion) || *loser.Items[0].Metadata.Version != 3 {
		t.Fatalf("loser: %+v", loser.Items[0])
	}
	for _, in := range []*inbox{inA2, inB1} { // drain
		in.next(10 * time.Second)
		in.next(10 * time.Second)
	}

	// A retried commit (same requestId) changes nothing and is notified again, the same.
	r := a2.call("commit", map[string]any{"requestId": "a2-v3", "userId": alice.id, "workspaceId": ws, "deviceId": dA2,
		"items": []any{nextVersion(file, "CHANGED", 100)}}, callOpts{})
	if r.Error != nil {
		t.Fatalf("retried commit: %+v", r.Error)
	}
	var orig *wire.CommitNotification
	for i := range results {
		if results[i].RequestID == "a2-v3" {
			orig = &results[i]
		}
	}
	if orig == nil || (orig.WorkspaceVersion != 2 && orig.WorkspaceVersion != 3) {
		t.Fatalf("a2-v3's first notification is missing or misnumbered: %+v", results)
	}
	again, _ := inB1.next(10 * time.Second)
	if !reflect.DeepEqual(again, *orig) {
		t.Fatalf("replay differs from the first notification:\n%+v\n%+v", again, *orig)
	}
	if p := b1.changesSince(ws, 0); p.WorkspaceVersion != 3 {
		t.Fatalf("a retried commit added an event: workspace at %d", p.WorkspaceVersion)
	}

	// b1 goes offline (stops consuming) while a1 commits three times; its queue keeps the
	// events, and getChangesSince covers the gap.
	b1.conn.Close()
	for i := range 3 {
		a1.commit(ws, dA1, fmt.Sprintf("off-%d", i), itemJSON(int64(-100-i), fmt.Sprintf("new-%d", i), false, nil, 1))
	}
	for range 3 {
		inA2.next(10 * time.Second) // a2 received them live
	}
	b1 = dialRaw(t, userURL(t, s, bob), bob.id)
	inB1 = b1.listen(dB1)
	var got []wire.CommitNotification
	for range 3 {
		n, _ := inB1.next(10 * time.Second)
		got = append(got, n)
	}
	if v := versions(got); len(v) != 3 || v[0] != 4 || v[2] != 6 {
		t.Fatalf("offline device received versions %v", v)
	}
	p := b1.changesSince(ws, 3)
	if p.FromVersion != 3 || p.ToVersion != 6 || p.HasMore || len(p.Items) != 3 {
		t.Fatalf("catch-up page %+v", p)
	}
	inB1.none(300 * time.Millisecond)
}

// PROTOCOL.md §1/§6: a member added later gets the workspace's events on a device
// registered before; after removal the ex-member's queue receives nothing more of it
// and the server refuses the ex-member at once.
func TestMembershipBindsAndUnbinds(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	alice := addUser(t, s, "Ivy")
	bob := addUser(t, s, "Jack")
	a := dialRaw(t, userURL(t, s, alice), alice.id)
	b := dialRaw(t, userURL(t, s, bob), bob.id)
	dA, dB := a.register("ivy-pc"), b.register("jack-pc")
	inB := b.listen(dB)

	ws := sharedWorkspace(t, s, alice, "Project", bob)
	a.waitWorkspaceCount(2)
	a.commit(ws, dA, "p1", itemJSON(-1, "plan.txt", false, nil, 1))
	if n, _ := inB.next(15 * time.Second); n.WorkspaceID != ws.String() || n.WorkspaceVersion != 1 {
		t.Fatalf("member got %+v", n)
	}

	syncctl(t, s, "workspace", "remove-member", "--workspace", ws.String(), "--user", bob.id.String())
	// The removal is decided against the workspace stream: the very next request is refused.
	b.refused("commit", map[string]any{"requestId": "late", "userId": bob.id, "workspaceId": ws, "deviceId": dB,
		"items": []any{itemJSON(-2, "late.txt", false, nil, 1)}}, wire.CodeUnauthorized, callOpts{async: true})
	// Once the binder applied the removal, Alice's next commits do not reach Bob.
	testenv.Eventually(t, 15*time.Second, func() error {
		r := b.call("getChanges", map[string]any{"requestId": "g", "userId": bob.id, "workspaceId": ws}, callOpts{})
		if r.Error == nil {
			return fmt.Errorf("ex-member still reads the workspace")
		}
		return nil
	})
	waitUnbound(t, s, bob.id, dB, ws)
	// PROTOCOL.md §8: the removed member's devices are told.
	if ev := inB.nextEvent(15 * time.Second); ev.method != "notifyUnshare" || !jsonHas(ev.param, "workspaceId", ws.String()) {
		t.Fatalf("after remove-member: %s %s", ev.method, ev.param)
	}
	a.commit(ws, dA, "p2", itemJSON(-3, "secret.txt", false, nil, 1))
	inA := a.listen(dA)
	for {
		n, _ := inA.next(15 * time.Second)
		if n.RequestID == "p2" {
			break
		}
	}
	inB.none(500 * time.Millisecond)
}

// waitUnbound polls the broker until the device queue is no longer bound to the
// workspace's exchange.
func waitUnbound(t *testing.T, s services, user, device, ws uuid.UUID) {
	t.Helper()
	q := topology.DeviceQueue(user, device)
	testenv.Eventually(t, 15*time.Second, func() error {
		out, err := execCommand("rabbitmqctl", "-q", "list_bindings", "--no-table-headers", "-p", vhostOf(t, s.amqp), "source_name", "destination_name")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && f[0] == topology.EventExchange(ws) && f[1] == q {
				return fmt.Errorf("%s still bound to %s", q, f[0])
			}
		}
		return nil
	})
}
