package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// tableRows lists the binder's rows as "user/workspace" (members) and "user/device"
// (devices), sorted.
func tableRows(t *testing.T, dsn, binder string) (members, devices []string) {
	t.Helper()
	c, err := pgx.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	read := func(q string) []string {
		rows, err := c.Query(ctxT(t), q, binder)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var a, b uuid.UUID
			err := r.Scan(&a, &b)
			return a.String() + "/" + b.String(), err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	return read(`SELECT user_id, workspace FROM binder_members WHERE binder = $1`),
		read(`SELECT user_id, device FROM binder_devices WHERE binder = $1`)
}

func pairs(ps ...[2]uuid.UUID) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p[0].String()+"/"+p[1].String())
	}
	slices.Sort(out)
	return out
}

// The binder's tables follow membership and devices in the global order: the owner and
// members are recorded, a removal forgets the membership, a removed user is forgotten
// whole, and a membership that a later event of the stream already ended is never
// recorded.
func TestBinderTables(t *testing.T) {
	e := newEnv(t)
	d1, d2, d3 := uuid.New(), uuid.New(), uuid.New()
	owner := newUser(t, e.store, d1)
	u := newUser(t, e.store, d2)
	gone := newUser(t, e.store, d3)
	ws, other := uuid.New(), uuid.New()
	s := domain.WorkspaceStream(ws)
	appendEvent(t, e.store, s, domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner, IsShared: true})
	appendEvent(t, e.store, domain.WorkspaceStream(other), domain.WorkspaceCreated{WorkspaceID: other, Name: "o", OwnerID: u})
	appendEvent(t, e.store, s, domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "w"})
	appendEvent(t, e.store, s, domain.MemberAdded{WorkspaceID: ws, UserID: gone, Name: "w"})
	appendEvent(t, e.store, domain.UserStream(gone), domain.UserRemoved{UserID: gone})
	appendEvent(t, e.store, domain.WorkspaceStream(other), domain.MemberAdded{WorkspaceID: other, UserID: owner, Name: "o"})
	last := appendEvent(t, e.store, domain.WorkspaceStream(other), domain.MemberRemoved{WorkspaceID: other, UserID: owner})

	cfg := binderConfig(t, e)
	cfg.BatchSize = 3 // the table changes of one batch are seen by the next
	b, err := NewBinder(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	members, devices := tableRows(t, e.dsn, "binder")
	if want := pairs([2]uuid.UUID{owner, ws}, [2]uuid.UUID{u, ws}, [2]uuid.UUID{u, other}); !slices.Equal(members, want) {
		t.Fatalf("members %v, want %v", members, want)
	}
	if want := pairs([2]uuid.UUID{owner, d1}, [2]uuid.UUID{u, d2}); !slices.Equal(devices, want) {
		t.Fatalf("devices %v, want %v", devices, want)
	}
	if st := b.Status(); st.Skipped != 0 || st.Failures != 0 || st.Restores != 1 {
		t.Fatalf("status %+v: want no skipped events or failures, one restore (the fresh vhost)", st)
	}
}

// The race of a device registering while its user's MemberAdded is not yet in the RPC
// server's read model: the binder has already handled the MemberAdded (no device then)
// and nobody declared the device's queue yet. On DeviceRegistered the binder declares
// the queue with the configured arguments and binds it to the user's and the
// workspace's exchanges.
func TestBinderBindsRegisteredDevice(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	owner, u := newUser(t, e.store), newUser(t, e.store)
	ws := uuid.New()
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner, IsShared: true})
	last := appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "w"})
	cfg := binderConfig(t, e)
	cfg.QueueOptions = topology.QueueOptions{MaxLength: 77}
	b, err := NewBinder(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)

	d := uuid.New()
	last = appendEvent(t, e.store, domain.UserStream(u), domain.DeviceRegistered{UserID: u, DeviceID: d, RequestID: "r", Name: "d", OS: "linux"})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d) || !p.reaches(u, u, d) {
		t.Fatal("registered device's queue not bound to its user's workspace and user exchanges")
	}
	args := queueArguments(t, e.amqp, topology.DeviceQueue(u, d))
	if args["x-max-length"] != float64(77) || args["x-expires"] != float64(topology.DefaultQueueExpiry/time.Millisecond) || args["x-overflow"] != "drop-head" {
		t.Fatalf("queue arguments %v, want the configured ones", args)
	}
	// A device update after its queue was deleted (expired) declares and binds it again.
	if _, err := p.ch.QueueDelete(topology.DeviceQueue(u, d), false, false, false); err != nil {
		t.Fatal(err)
	}
	last = appendEvent(t, e.store, domain.UserStream(u), domain.DeviceUpdated{UserID: u, DeviceID: d, RequestID: "r2", Name: "d2", OS: "linux"})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d) {
		t.Fatal("updated device's queue not declared and bound again")
	}
}

// queueArguments reads a queue's arguments through the management API.
func queueArguments(t *testing.T, amqpURL, queue string) map[string]any {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	var q struct {
		Arguments map[string]any `json:"arguments"`
	}
	path := "/api/queues/" + url.PathEscape(strings.TrimPrefix(u.Path, "/")) + "/" + url.PathEscape(queue)
	if err := mgmt(http.MethodGet, path, &q); err != nil {
		t.Fatal(err)
	}
	return q.Arguments
}

// loseNonDurable deletes exchanges as a broker restart does with non-durable ones
// (deleting an exchange deletes its bindings).
func loseNonDurable(t *testing.T, amqpURL string, names ...string) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := ch.ExchangeDelete(n, false, false); err != nil {
			t.Fatalf("delete exchange %s: %v", n, err)
		}
	}
}

// A broker restart simulated without restarting it: the marker and the event exchanges
// vanish (and with them every binding), the notifier reconnects first and waits for the
// marker while a commit is stored, then the binder reconnects, restores every binding
// of its tables and declares the marker; the commit reaches the device's durable queue.
// A membership that ended and a queue that expired are not restored.
func TestBinderRestoresBindingsAfterBrokerLostThem(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d, dx := uuid.New(), uuid.New()
	owner := newUser(t, e.store)
	u := newUser(t, e.store, d, dx)
	ws, left := uuid.New(), uuid.New()
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner, IsShared: true})
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "w"})
	appendEvent(t, e.store, domain.WorkspaceStream(left), domain.WorkspaceCreated{WorkspaceID: left, Name: "l", OwnerID: owner, IsShared: true})
	appendEvent(t, e.store, domain.WorkspaceStream(left), domain.MemberAdded{WorkspaceID: left, UserID: u, Name: "l"})
	p.device(u, d) // as updateDevice did
	p.device(u, dx)
	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	last := appendEvent(t, e.store, domain.WorkspaceStream(left), domain.MemberRemoved{WorkspaceID: left, UserID: u})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d) || p.reaches(left, u, d) {
		t.Fatal("bindings do not match membership before the simulated restart")
	}
	// A stale binding to the workspace left: a restore must not bring it back either.
	if err := topology.Bind(p.ch, u, d, left); err != nil {
		t.Fatal(err)
	}

	cfg := fastConfig(t, e)
	cfg.SkipTopologyCheck = false
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Leader && !st.Position.Less(positionOf(t, e.store, last.ID)) {
			return nil
		}
		return errors.New("notifier not leading and caught up yet")
	})
	// The membership events gave their user events (notifyUnshare); nothing more may
	// be published without the marker.
	published := n.Status().Published

	loseNonDurable(t, e.amqp, topology.Marker, topology.EventExchange(ws), topology.EventExchange(left), topology.EventExchange(u))
	if _, err := p.ch.QueueDelete(topology.DeviceQueue(u, dx), false, false, false); err != nil {
		t.Fatal(err) // dx's queue expired meanwhile
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if killConnections(t, e.amqp, "syncd-notifier") == 0 {
			return errors.New("no notifier connection to close yet")
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, func() error {
		if !n.Status().WaitingForTopology {
			return errors.New("notifier not waiting for the marker")
		}
		return nil
	})
	rec, _ := commit(t, e.store, ws, 1)
	pos := positionOf(t, e.store, rec.ID)
	if st := n.Status(); !st.Position.Less(pos) || st.Published != published {
		t.Fatalf("notifier published without the marker: %+v", st)
	}

	testenv.Eventually(t, 20*time.Second, func() error {
		if killConnections(t, e.amqp, "syncd-binder") == 0 {
			return errors.New("no binder connection to close yet")
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != pos || st.Published != published+1 {
			return fmt.Errorf("notifier status %+v, want the commit published", st)
		}
		return nil
	})
	if st := b.Status(); st.Restores != 2 {
		t.Fatalf("binder status %+v: want 2 restores (fresh vhost, simulated restart)", st)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		m, ok, err := p.ch.Get(topology.DeviceQueue(u, d), true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return errors.New("commit not in the device's queue yet")
		}
		var ev struct {
			Method string `json:"method"`
			Params []struct {
				WorkspaceVersion int64 `json:"workspaceVersion"`
			} `json:"params"`
		}
		if err := json.Unmarshal(m.Body, &ev); err == nil && ev.Method == "notifyUnshare" {
			return errors.New("the user's notifyUnshare (of the workspace left) came first")
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil || len(ev.Params) != 1 || ev.Params[0].WorkspaceVersion != 1 {
			t.Fatalf("unexpected message %s: %v", m.Body, err)
		}
		return nil
	})
	if !p.reaches(u, u, d) || !p.reaches(ws, u, d) {
		t.Fatal("bindings to the user's and the workspace's exchanges not restored")
	}
	if p.reaches(left, u, d) {
		t.Fatal("binding to a workspace the user left restored")
	}
	if ok, err := p.queueExists(u, dx); err != nil || ok {
		t.Fatalf("an expired queue was declared again by the restore: %v %v", ok, err)
	}
}

// queueExists checks for a device queue on a throwaway channel.
func (p *prober) queueExists(user, device uuid.UUID) (bool, error) {
	c := &channels{conn: p.conn}
	defer c.close()
	return c.queueExists(user, device)
}

// A binder whose tables were never built (it ran before they existed: a checkpoint but
// no binder_tables row) follows the store again from the start and fills them.
func TestBinderBuildsTablesOfAnOlderVersion(t *testing.T) {
	e := newEnv(t)
	d := uuid.New()
	u := newUser(t, e.store, d)
	ws := uuid.New()
	last := appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: u})
	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	stop()
	c, err := pgx.Connect(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range []string{`DELETE FROM binder_tables`, `DELETE FROM binder_members`, `DELETE FROM binder_devices`} {
		if _, err := c.Exec(ctxT(t), q); err != nil {
			t.Fatal(err)
		}
	}
	b, err = NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	members, devices := tableRows(t, e.dsn, "binder")
	if want := pairs([2]uuid.UUID{u, ws}); !slices.Equal(members, want) {
		t.Fatalf("members %v, want %v", members, want)
	}
	if want := pairs([2]uuid.UUID{u, d}); !slices.Equal(devices, want) {
		t.Fatalf("devices %v, want %v", devices, want)
	}
	if st := b.Status(); st.Handled < 3 {
		t.Fatalf("status %+v: the second binder did not follow the store from the start", st)
	}
}

// A device event older than the queue expiry (a catch-up from far behind) binds only an
// existing queue: a queue that expired unused is not brought back.
func TestBinderLeavesExpiredQueuesAlone(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	oldDev, liveDev := uuid.New(), uuid.New()
	u := newUser(t, e.store, oldDev, liveDev)
	p.device(u, liveDev)
	recs, err := e.store.ReadStream(ctxT(t), domain.UserStream(u), 1, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("read user stream: %d events, %v", len(recs), err)
	}
	const expiry = time.Second
	time.Sleep(time.Until(recs[2].RecordedAt.Add(expiry))) // the events are older than the expiry
	cfg := binderConfig(t, e)
	cfg.QueueOptions = topology.QueueOptions{Expiry: expiry}
	b, err := NewBinder(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, recs[2].ID)
	if ok, err := p.queueExists(u, oldDev); err != nil || ok {
		t.Fatalf("an old registration declared the device's queue: %v %v", ok, err)
	}
	if !p.reaches(u, u, liveDev) {
		t.Fatal("an old registration did not bind the device's existing queue")
	}
	if _, devices := tableRows(t, e.dsn, "binder"); len(devices) != 2 {
		t.Fatalf("devices %v, want both", devices)
	}
}
