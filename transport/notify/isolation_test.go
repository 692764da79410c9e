package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// refuse binds to the exchange of ws a queue that holds nothing and rejects what it
// cannot hold (x-max-length 0, x-overflow reject-publish): the broker nacks every
// message published to that exchange while it exists. The returned func deletes it.
func refuse(t *testing.T, amqpURL string, ws uuid.UUID) (remove func()) {
	return refusingQueue(t, amqpURL, ws, "refuse-", amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"})
}

// refuseLarger binds to the exchange of ws a queue that nacks every message whose body
// is over maxBytes (x-max-length-bytes, x-overflow reject-publish; nothing consumes it,
// and it holds at most one small message at a time here). The returned func deletes it.
func refuseLarger(t *testing.T, amqpURL string, ws uuid.UUID, maxBytes int) (remove func()) {
	return refusingQueue(t, amqpURL, ws, "refuse-large-", amqp.Table{"x-max-length-bytes": int32(maxBytes), "x-overflow": "reject-publish"})
}

// refusingQueue declares a queue with args bound to the exchange of ws; the returned
// func deletes it.
func refusingQueue(t *testing.T, amqpURL string, ws uuid.UUID, prefix string, args amqp.Table) (remove func()) {
	t.Helper()
	ch := exchangeChannel(t, amqpURL, ws)
	q, err := ch.QueueDeclare(prefix+ws.String(), false, false, false, false, args)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", topology.EventExchange(ws), false, nil); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := ch.QueueDelete(q.Name, false, false, false); err != nil {
			t.Fatalf("delete %s: %v", q.Name, err)
		}
	}
}

// deliveries counts the messages of l per event id (MessageId).
func (l *listener) deliveries() map[string]int {
	out := map[string]int{}
	for _, d := range l.all() {
		out[d.MessageId]++
	}
	return out
}

// setAsideOf lists the set-aside events of follower.
func setAsideOf(t *testing.T, dsn, follower string) []SetAside {
	t.Helper()
	pool, err := pgxpool.New(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	out, err := ListSetAside(ctxT(t), pool, follower, 0)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// atMost fails the test if an event of ids was delivered more than n times.
func atMost(t *testing.T, l *listener, n int, ids ...uuid.UUID) {
	t.Helper()
	got := l.deliveries()
	for _, id := range ids {
		if c := got[id.String()]; c > n {
			t.Fatalf("event %s delivered %d times, want at most %d (all: %v)", id, c, n, got)
		}
	}
}

// A message the broker nacks does not make the notifier redo its batch: the checkpoint
// moves past the confirmed prefix, the events after it that the broker confirmed are
// not published again, and once the broker takes the message everything arrives; no
// message other than the refused one is delivered more than twice.
func TestNackKeepsProgress(t *testing.T) {
	e := newEnv(t)
	wsA, wsX := uuid.New(), uuid.New()
	la, lx := listen(t, e.amqp, wsA), listen(t, e.amqp, wsX)
	remove := refuse(t, e.amqp, wsX)
	var ids []uuid.UUID
	for v := int64(1); v <= 3; v++ {
		rec, _ := commit(t, e.store, wsA, v)
		ids = append(ids, rec.ID)
	}
	x, _ := commit(t, e.store, wsX, 1)
	var last eventstore.Record
	for v := int64(4); v <= 6; v++ {
		last, _ = commit(t, e.store, wsA, v)
		ids = append(ids, last.ID)
	}
	prefix := positionOf(t, e.store, ids[2])
	cfg := fastConfig(t, e)
	cfg.MaxAttempts = 1_000_000 // never set aside here
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != prefix || st.Failures < 3 {
			return fmt.Errorf("status %+v, want the checkpoint at the confirmed prefix %v after several refusals", st, prefix)
		}
		return nil
	})
	waitVersions(t, la, 6, 20*time.Second) // the events after the refused one went out
	atMost(t, la, 2, ids...)
	remove()
	waitVersions(t, lx, 1, 20*time.Second)
	lastPos := positionOf(t, e.store, last.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos {
			return fmt.Errorf("status %+v, want position %v", st, lastPos)
		}
		return nil
	})
	atMost(t, la, 2, ids...)
	t.Logf("deliveries on A %v, on X %v; status %+v", la.deliveries(), lx.deliveries()[x.ID.String()], n.Status())
	if st := n.Status(); st.Skipped != 0 {
		t.Fatalf("status %+v: nothing should be set aside", st)
	}
}

// A message the broker refuses every time is set aside after MaxAttempts spanning
// PoisonAfter: recorded with its error, counted, and the events after it are published.
func TestRefusedMessageSetAside(t *testing.T) {
	e := newEnv(t)
	wsA, wsX := uuid.New(), uuid.New()
	la := listen(t, e.amqp, wsA)
	refuse(t, e.amqp, wsX)
	a1, _ := commit(t, e.store, wsA, 1)
	x, _ := commit(t, e.store, wsX, 1)
	a2, _ := commit(t, e.store, wsA, 2)
	a3, _ := commit(t, e.store, wsA, 3)
	cfg := fastConfig(t, e)
	cfg.MaxAttempts = 3
	cfg.PoisonAfter = time.Millisecond
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	waitVersions(t, la, 3, 20*time.Second)
	lastPos := positionOf(t, e.store, a3.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos || st.Skipped != 1 {
			return fmt.Errorf("status %+v, want position %v with one event set aside", st, lastPos)
		}
		return nil
	})
	atMost(t, la, 2, a1.ID, a2.ID, a3.ID)
	got := setAsideOf(t, e.dsn, "notifier")
	if len(got) != 1 || got[0].EventID != x.ID || got[0].Stream != domain.WorkspaceStream(wsX) || got[0].StreamVersion != 1 ||
		got[0].Attempts != 3 || !strings.Contains(got[0].Error, "nacked") || got[0].Position != positionOf(t, e.store, x.ID) {
		t.Fatalf("set aside %+v, want the refused commit after 3 attempts", got)
	}
	if err := n.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after setting the event aside", err)
	}
}

// Nacks that last less than PoisonAfter never set the message aside, however many:
// the notifier keeps retrying it with back-off, and publishes it once the broker takes
// it again (a nack is usually the broker's condition, not the message's fault).
func TestNackWithinPoisonAfterNotSetAside(t *testing.T) {
	e := newEnv(t)
	wsA, wsX := uuid.New(), uuid.New()
	la, lx := listen(t, e.amqp, wsA), listen(t, e.amqp, wsX)
	remove := refuse(t, e.amqp, wsX)
	commit(t, e.store, wsA, 1)
	x, _ := commit(t, e.store, wsX, 1)
	a2, _ := commit(t, e.store, wsA, 2)
	cfg := fastConfig(t, e)
	cfg.MaxAttempts = 2
	cfg.PoisonAfter = time.Hour
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	xPos := positionOf(t, e.store, x.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Failures < 4*uint64(cfg.MaxAttempts) {
			return fmt.Errorf("status %+v, want at least %d refusals", st, 4*cfg.MaxAttempts)
		}
		return nil
	})
	if st := n.Status(); st.Skipped != 0 || !st.Position.Less(xPos) {
		t.Fatalf("status %+v after nacks within PoisonAfter: want nothing set aside and the checkpoint before %v", st, xPos)
	}
	remove()
	waitVersions(t, lx, 1, 20*time.Second)
	waitVersions(t, la, 2, 20*time.Second)
	lastPos := positionOf(t, e.store, a2.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos {
			return fmt.Errorf("status %+v, want position %v", st, lastPos)
		}
		return nil
	})
	if st := n.Status(); st.Skipped != 0 {
		t.Fatalf("status %+v: nothing should be set aside", st)
	}
	if got := setAsideOf(t, e.dsn, "notifier"); len(got) != 0 {
		t.Fatalf("set aside %+v, want none", got)
	}
}

// When the broker nacks a workspace's message and confirms a later one of the same
// workspace in the same window, the later one is not remembered as done: it is
// published again after the nacked one, so the workspace's notifications end in
// workspaceVersion order (the last arrival of each is in order).
func TestNackedMessageRepublishesLaterOfItsWorkspace(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	remove := refuseLarger(t, e.amqp, ws, 3000)
	id := domain.ItemID(1)
	big := domain.Committed{WorkspaceID: ws, WorkspaceVersion: 1, RequestID: "big", UserID: uuid.New(), DeviceID: uuid.New(),
		CommittedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true,
			Metadata: &domain.ItemMetadata{ID: &id, Version: 1, WorkspaceID: ws, Status: domain.StatusNew, Filename: "big",
				Chunks: chunks(100)}}}}
	appendEvent(t, e.store, domain.WorkspaceStream(ws), big) // about 7 KB: refused
	small, _ := commit(t, e.store, ws, 2)                    // under 1000 bytes: confirmed
	cfg := fastConfig(t, e)
	cfg.MaxAttempts = 1_000_000 // never set aside here
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Failures < 3 {
			return fmt.Errorf("status %+v, want several refusals", st)
		}
		return nil
	})
	remove()
	lastPos := positionOf(t, e.store, small.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos {
			return fmt.Errorf("status %+v, want position %v", st, lastPos)
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, func() error {
		vs := l.versions(t)
		last := map[int64]int{}
		for i, v := range vs {
			last[v] = i
		}
		i1, ok1 := last[1]
		i2, ok2 := last[2]
		if !ok1 || !ok2 || i2 < i1 {
			return fmt.Errorf("arrivals %v: want version 2 again after the last version 1", vs)
		}
		return nil
	})
	t.Logf("arrivals %v; status %+v", l.versions(t), n.Status())
}

// A notification larger than MaxMessageBytes is set aside unpublished (the broker would
// close the channel on it); the commits around it are published.
func TestOversizedNotificationSetAside(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	commit(t, e.store, ws, 1)
	id := domain.ItemID(2)
	big := domain.Committed{WorkspaceID: ws, WorkspaceVersion: 2, RequestID: "big", UserID: uuid.New(), DeviceID: uuid.New(),
		CommittedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true,
			Metadata: &domain.ItemMetadata{ID: &id, Version: 1, WorkspaceID: ws, Status: domain.StatusNew, Filename: "big",
				Chunks: chunks(100)}}}}
	bigRec := appendEvent(t, e.store, domain.WorkspaceStream(ws), big)
	c3, _ := commit(t, e.store, ws, 3)
	cfg := fastConfig(t, e)
	cfg.MaxMessageBytes = 3000 // an ordinary commit's notification is under 1000 bytes
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	lastPos := positionOf(t, e.store, c3.ID)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos || st.Skipped != 1 || st.Published != 2 {
			return fmt.Errorf("status %+v, want position %v, 2 published, 1 set aside", st, lastPos)
		}
		return nil
	})
	if vs := l.versions(t); len(vs) != 2 || vs[0] != 1 || vs[1] != 3 {
		t.Fatalf("published %v, want [1 3]", vs)
	}
	got := setAsideOf(t, e.dsn, "notifier")
	if len(got) != 1 || got[0].EventID != bigRec.ID || !strings.Contains(got[0].Error, ErrTooLarge.Error()) {
		t.Fatalf("set aside %+v, want the oversized commit", got)
	}
}

// Healthy reports a notifier that cannot make progress (held by the horizon) with its
// name and checkpoint, and recovers once it can.
func TestNotifierHealthy(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	first, _ := commit(t, e.store, ws, 1)
	commit(t, e.store, ws, 2)
	last, _ := commit(t, e.store, ws, 3)
	pos1, pos3 := positionOf(t, e.store, first.ID), positionOf(t, e.store, last.ID)
	var mu sync.Mutex
	horizon := pos1
	cfg := fastConfig(t, e)
	cfg.StallAfter = 50 * time.Millisecond
	cfg.Horizon = func(context.Context) (eventstore.Position, error) {
		mu.Lock()
		defer mu.Unlock()
		return horizon, nil
	}
	n := mustNotifier(t, cfg, e.store)
	if err := n.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v before Run", err)
	}
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		err := n.Healthy()
		if err == nil {
			return errors.New("still healthy")
		}
		// Under load it may first report the follower stuck before it reached pos1
		// (the store's own read horizon held it back); it must come to say why.
		if s := err.Error(); !strings.Contains(s, "notifier notifier") || !strings.Contains(s, pos1.String()) || !strings.Contains(s, "horizon") {
			return fmt.Errorf("Healthy() = %q, want the follower, its checkpoint %v and the reason", s, pos1)
		}
		return nil
	})
	mu.Lock()
	horizon = pos3
	mu.Unlock()
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != pos3 {
			return fmt.Errorf("status %+v, want %v", st, pos3)
		}
		return n.Healthy()
	})
}

// chunks returns n distinct 64-character chunk names.
func chunks(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%064x", i)
	}
	return out
}

// The binder sets aside a membership event that does not decode (recorded, counted)
// and applies the events after it.
func TestBinderSetsAsideUndecodable(t *testing.T) {
	e := newEnv(t)
	p := newProber(t, e.amqp)
	d := uuid.New()
	owner := newUser(t, e.store)
	u := newUser(t, e.store, d)
	p.device(u, d)
	ws := uuid.New()
	s := domain.WorkspaceStream(ws)
	appendEvent(t, e.store, s, domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: owner})
	bad := eventstore.Record{ID: uuid.New(), Type: domain.TypeMemberAdded, Data: []byte(`{"workspaceId": 7}`)}
	if _, err := e.store.Append(ctxT(t), s, eventstore.Any(), bad); err != nil {
		t.Fatal(err)
	}
	last := appendEvent(t, e.store, s, domain.MemberAdded{WorkspaceID: ws, UserID: u, Name: "w"})
	b, err := NewBinder(binderConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	waitBinder(t, b, e.store, last.ID)
	if !p.reaches(ws, u, d) {
		t.Fatal("the member added after the undecodable event is not bound")
	}
	if st := b.Status(); st.Skipped != 1 {
		t.Fatalf("status %+v, want one event set aside", st)
	}
	got := setAsideOf(t, e.dsn, "binder")
	if len(got) != 1 || got[0].EventID != bad.ID || got[0].Type != domain.TypeMemberAdded || got[0].Stream != s || got[0].StreamVersion != 2 {
		t.Fatalf("set aside %+v, want the undecodable MemberAdded", got)
	}
	if all := setAsideOf(t, e.dsn, ""); len(all) != 1 {
		t.Fatalf("every follower's set-aside events: %+v", all)
	}
}

// A binder the broker refuses to serve (access refused: the server's own
// misconfiguration, never one event's fault) retries without setting anything aside;
// Healthy reports it stuck and recovers once the broker serves it again.
func TestBinderHealthy(t *testing.T) {
	e := newEnv(t)
	cfg := binderConfig(t, e)
	cfg.StallAfter = 50 * time.Millisecond
	cfg.MaxAttempts = 1
	b, err := NewBinder(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, b.Run)
	first := newUser(t, e.store)
	waitBinder(t, b, e.store, lastOf(t, e.store, domain.UserStream(first)))
	setConfigurePermission(t, e.amqp, "^amq\\.gen-.*")
	u := newUser(t, e.store, uuid.New())
	testenv.Eventually(t, 20*time.Second, func() error {
		err := b.Healthy()
		if err == nil {
			return errors.New("still healthy")
		}
		// Under load it may first report the follower stuck with no error yet (the store's
		// read horizon held the new events back past StallAfter); it must come to name
		// the broker's refusal.
		if s := err.Error(); !strings.Contains(s, "binder binder") || !strings.Contains(s, "403") {
			return fmt.Errorf("Healthy() = %q, want the follower and the broker's refusal", s)
		}
		return nil
	})
	setConfigurePermission(t, e.amqp, ".*")
	waitBinder(t, b, e.store, lastOf(t, e.store, domain.UserStream(u)))
	testenv.Eventually(t, 20*time.Second, b.Healthy)
	if st := b.Status(); st.Skipped != 0 {
		t.Fatalf("status %+v: a refused permission must not set events aside", st)
	}
}

// lastOf returns the id of the last event of stream.
func lastOf(t *testing.T, s eventstore.Store, stream string) uuid.UUID {
	t.Helper()
	evs, err := s.ReadStream(ctxT(t), stream, 1, 1000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("read %s: %v (%d events)", stream, err, len(evs))
	}
	return evs[len(evs)-1].ID
}

// A batch read holds at most the byte budget of data, and at least one event.
func TestReadAllBounded(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	for v := int64(1); v <= 4; v++ {
		commit(t, e.store, ws, v)
	}
	var all []eventstore.RecordedEvent
	testenv.Eventually(t, 20*time.Second, func() error { // visible once older transactions of the cluster end
		var err error
		all, err = e.store.ReadAll(ctxT(t), eventstore.Start, 10)
		if err == nil && len(all) != 4 {
			err = fmt.Errorf("read all: %d events of 4", len(all))
		}
		return err
	})
	size := len(all[0].Data) + len(all[0].Metadata)
	two := size + len(all[1].Data) + len(all[1].Metadata)
	for _, c := range []struct{ budget, want int }{{1, 1}, {size, 1}, {two - 1, 1}, {two, 2}, {1 << 30, 4}} {
		got, err := readAllBounded(ctxT(t), e.store, eventstore.Start, 10, c.budget)
		if err != nil || len(got) != c.want {
			t.Fatalf("budget %d: %d events, %v; want %d", c.budget, len(got), err, c.want)
		}
	}
}

// Publishing goes through a window: never more messages in flight than MaxInFlight, and
// one at a time when each body exceeds MaxInFlightBytes.
func TestPublishWindow(t *testing.T) {
	for _, c := range []struct {
		name            string
		inFlight, bytes int
		wantPeak        int64
	}{{"count", 4, 1 << 20, 4}, {"bytes", 64, 1, 1}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			ws := uuid.New()
			l := listen(t, e.amqp, ws)
			for v := int64(1); v <= 40; v++ {
				commit(t, e.store, ws, v)
			}
			cfg := fastConfig(t, e)
			cfg.MaxInFlight, cfg.MaxInFlightBytes = c.inFlight, c.bytes
			n, err := New(cfg, e.store)
			if err != nil {
				t.Fatal(err)
			}
			start(t, n.Run)
			waitVersions(t, l, 40, 20*time.Second)
			if peak := n.peak.Load(); peak < 1 || peak > c.wantPeak {
				t.Fatalf("peak in flight %d, want 1..%d", peak, c.wantPeak)
			}
		})
	}
}
