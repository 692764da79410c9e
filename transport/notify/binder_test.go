package notify

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
)

func binderConfig(t *testing.T, e *env) BinderConfig {
	return BinderConfig{
		DSN: e.dsn, AMQPURL: e.amqp,
		PollMin: time.Millisecond, PollMax: 20 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		LeaderRetry: 50 * time.Millisecond, Logger: testLogger(t),
	}
}

func TestBinderConfigValidate(t *testing.T) {
	if err := (&BinderConfig{AMQPURL: "amqp://x"}).Validate(); err == nil {
		t.Fatal("missing DSN accepted")
	}
	if err := (BinderConfig{DSN: "postgres://x", AMQPURL: "amqp://x", PollMin: -1}).Validate(); err == nil {
		t.Fatal("negative PollMin accepted")
	}
	c := BinderConfig{DSN: "postgres://x", AMQPURL: "amqp://x"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Name != "" {
		t.Fatalf("Validate changed the config: %+v", c)
	}
	c = c.withDefaults()
	if c.Name != "binder" || c.PollMax != 250*time.Millisecond || c.RetryMax != 5*time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// newUser appends a user with the given devices to the store.
func newUser(t *testing.T, s eventstore.Store, devices ...uuid.UUID) uuid.UUID {
	t.Helper()
	u := uuid.New()
	appendEvent(t, s, domain.UserStream(u), domain.UserCreated{UserID: u, Name: "u", Email: u.String() + "@x"})
	for i, d := range devices {
		appendEvent(t, s, domain.UserStream(u), domain.DeviceRegistered{UserID: u, DeviceID: d, RequestID: fmt.Sprintf("reg-%d", i), Name: "d", OS: "linux"})
	}
	return u
}

// prober publishes probes to workspace exchanges and checks which device queues get them.
type prober struct {
	t    *testing.T
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newProber(t *testing.T, amqpURL string) *prober {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return &prober{t: t, conn: conn, ch: ch}
}

// device declares a device's queue as the RPC server does on updateDevice (bound to the
// user's exchange only).
func (p *prober) device(user, device uuid.UUID) {
	if err := topology.DeclareDeviceQueue(p.ch, user, device, nil, topology.QueueOptions{}); err != nil {
		p.t.Fatal(err)
	}
}

// reaches publishes a probe to the workspace's exchange, waits for the broker's confirm
// (after which the probe is in every queue it was routed to), and reports whether the
// device's queue got it. It drains the queue.
func (p *prober) reaches(ws, user, device uuid.UUID) bool {
	p.t.Helper()
	if err := topology.DeclareEventExchange(p.ch, ws); err != nil {
		p.t.Fatal(err)
	}
	probe := uuid.NewString()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctxT(p.t), topology.EventExchange(ws), "", false, false, amqp.Publishing{Body: []byte(probe)})
	if err != nil {
		p.t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctxT(p.t)); err != nil || !ok {
		p.t.Fatalf("probe not confirmed: %v %v", ok, err)
	}
	found := false
	for {
		d, ok, err := p.ch.Get(topology.DeviceQueue(user, device), true)
		if err != nil {
			p.t.Fatal(err)
		}
		if !ok {
			return found
		}
		if string(d.Body) == probe {
			found = true
		}
	}
}

func waitBinder(t *testing.T, b *Binder, s eventstore.Store, last uuid.UUID) {
	t.Helper()
	pos := positionOf(t, s, last)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := b.Status(); st.Position != pos {
			return fmt.Errorf("binder at %v, want %v (status %+v)", st.Position, pos, st)
		}
		return nil
	})
}

// The binder binds every existing device queue of a new member (and of a workspace's
// owner) and unbinds them when the membership ends; devices whose queue expired and
// unbinding from an exchange that never existed do not stop it.
func TestBinderFollowsMembership(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d1, d2, d3 := uuid.New(), uuid.New(), uuid.New()
	owner := newUser(t, e.store)
	u := newUser(t, e.store, d1, d2, d3)
	p.device(u, d1)
	p.device(u, d3)
	ws, own := uuid.New(), uuid.New()
	wsStream := domain.WorkspaceStream(ws)
	appendEvent(t, e.store, wsStream, domain.WorkspaceCreated{WorkspaceID: ws, Name: "shared", OwnerID: owner, IsShared: true})
	appendEvent(t, e.store, domain.WorkspaceStream(own), domain.WorkspaceCreated{WorkspaceID: own, Name: "mine", OwnerID: u})
	// A removal from a workspace whose exchange was never declared.
	last := appendEvent(t, e.store, domain.WorkspaceStream(uuid.New()), domain.MemberRemoved{WorkspaceID: uuid.New(), UserID: u})

	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	// The binder declared d2's queue on DeviceRegistered; it expires unused.
	if _, err := p.ch.QueueDelete(topology.DeviceQueue(u, d2), false, false, false); err != nil {
		t.Fatal(err)
	}
	if !p.reaches(own, u, d1) || !p.reaches(own, u, d3) {
		t.Fatal("the owner's devices are not bound to the workspace they created")
	}
	if p.reaches(ws, u, d1) {
		t.Fatal("device bound before its user became a member")
	}

	last = appendEvent(t, e.store, wsStream, domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "shared"})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d1) || !p.reaches(ws, u, d3) {
		t.Fatal("member's device queues not bound after MemberAdded")
	}

	last = appendEvent(t, e.store, wsStream, domain.MemberRemoved{WorkspaceID: ws, UserID: u})
	waitBinder(t, b, e.store, last.ID)
	if p.reaches(ws, u, d1) || p.reaches(ws, u, d3) {
		t.Fatal("ex-member's device queues still bound after MemberRemoved")
	}
	if !p.reaches(u, u, d1) || !p.reaches(own, u, d1) {
		t.Fatal("unbinding one workspace touched the queue's other bindings")
	}

	// A device whose queue appears later is bound on the next membership change.
	p.device(u, d2)
	last = appendEvent(t, e.store, wsStream, domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "shared"})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d2) || !p.reaches(ws, u, d1) {
		t.Fatal("device queues not bound after the user rejoined")
	}
	if st := b.Status(); st.Skipped != 0 || st.Failures != 0 {
		t.Fatalf("status %+v: want no skipped events and no failures", st)
	}
}

// Replaying from the start (a lost checkpoint) is idempotent and binds nothing that a
// later event already undid.
func TestBinderReplay(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d := uuid.New()
	owner := newUser(t, e.store)
	stay, leave := newUser(t, e.store, d), newUser(t, e.store, d)
	p.device(stay, d)
	p.device(leave, d)
	ws := uuid.New()
	s := domain.WorkspaceStream(ws)
	appendEvent(t, e.store, s, domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner})
	appendEvent(t, e.store, s, domain.MemberAdded{WorkspaceID: ws, UserID: stay, Name: "w"})
	added := appendEvent(t, e.store, s, domain.MemberAdded{WorkspaceID: ws, UserID: leave, Name: "w"})
	last := appendEvent(t, e.store, s, domain.MemberRemoved{WorkspaceID: ws, UserID: leave})

	// The look-ahead: leave's MemberAdded is already undone at the stream's end.
	recs, err := e.store.ReadStream(ctxT(t), s, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		m, ok, err := membershipOf(rec)
		if err != nil || !ok {
			t.Fatalf("membershipOf(%s): %v %v", rec.Type, ok, err)
		}
		still, err := stillMember(ctxT(t), e.store, m)
		if err != nil {
			t.Fatal(err)
		}
		if want := rec.ID != added.ID && rec.ID != last.ID; m.member && still != want {
			t.Fatalf("stillMember(%s of %s) = %v, want %v", rec.Type, m.user, still, want)
		}
	}

	for round := 0; round < 2; round++ {
		b, err := NewBinder(binderConfig(t, e), e.store)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, b.Run)
		waitBinder(t, b, e.store, last.ID)
		stop()
		if !p.reaches(ws, stay, d) || p.reaches(ws, leave, d) {
			t.Fatalf("round %d: bindings do not match membership", round)
		}
		pool, err := pgxpool.New(ctxT(t), e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctxT(t), `DELETE FROM notify_checkpoints WHERE name = 'binder'`); err != nil {
			t.Fatal(err)
		}
		pool.Close()
	}
}

// A broker outage while the binder works: it reconnects and applies what came after.
func TestBinderBrokerOutage(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d := uuid.New()
	u := newUser(t, e.store, d)
	p.device(u, d)
	owner := newUser(t, e.store)
	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if killConnections(t, e.amqp, "syncd-binder") == 0 {
			return errors.New("no binder connection to close yet")
		}
		return nil
	})
	ws := uuid.New()
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner})
	last := appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "w"})
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d) {
		t.Fatal("not bound after the broker outage")
	}
}

// A removed device's queue is deleted and the device forgotten: later membership
// changes neither bind nor re-create it, and the user's other devices keep theirs.
func TestBinderForgetsRemovedDevice(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d1, d2 := uuid.New(), uuid.New()
	u := newUser(t, e.store, d1, d2)
	p.device(u, d1)
	p.device(u, d2)
	own := uuid.New()
	last := appendEvent(t, e.store, domain.WorkspaceStream(own), domain.WorkspaceCreated{WorkspaceID: own, Name: "mine", OwnerID: u})
	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(own, u, d1) || !p.reaches(own, u, d2) {
		t.Fatal("devices not bound")
	}

	last = appendEvent(t, e.store, domain.UserStream(u), domain.DeviceRemoved{UserID: u, DeviceID: d1})
	waitBinder(t, b, e.store, last.ID)
	queueExists := func(dev uuid.UUID) bool {
		ch, err := p.conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		_, err = ch.QueueDeclarePassive(topology.DeviceQueue(u, dev), true, false, false, false, nil)
		return err == nil
	}
	if queueExists(d1) {
		t.Fatal("the removed device's queue still exists")
	}
	ws := uuid.New()
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "other", OwnerID: uuid.New()})
	last = appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "other"})
	waitBinder(t, b, e.store, last.ID)
	if queueExists(d1) {
		t.Fatal("the removed device's queue was re-created")
	}
	if !p.reaches(ws, u, d2) || !p.reaches(own, u, d2) {
		t.Fatal("the user's other device lost its bindings")
	}
	if st := b.Status(); st.Skipped != 0 || st.Failures != 0 {
		t.Fatalf("status %+v: want no skipped events and no failures", st)
	}
}
