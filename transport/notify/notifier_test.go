package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func TestConfigValidate(t *testing.T) {
	if err := (&Config{AMQPURL: "amqp://x"}).Validate(); err == nil {
		t.Fatal("missing DSN accepted")
	}
	if err := (&Config{DSN: "postgres://x"}).Validate(); err == nil {
		t.Fatal("missing AMQPURL accepted")
	}
	if err := (Config{DSN: "postgres://x", AMQPURL: "amqp://x", BatchSize: -1}).Validate(); err == nil {
		t.Fatal("negative BatchSize accepted")
	}
	c := Config{DSN: "postgres://x", AMQPURL: "amqp://x", PollMin: time.Second, PollMax: time.Millisecond}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Name != "" || c.BatchSize != 0 {
		t.Fatalf("Validate changed the config: %+v", c)
	}
	c = c.withDefaults()
	if c.Name != "notifier" || c.BatchSize != 256 || c.ConfirmTimeout != 15*time.Second || c.PollMax != time.Second || c.Logger == nil ||
		c.BatchBytes != DefaultBatchBytes || c.MaxInFlight != 64 || c.MaxInFlightBytes != 4<<20 || c.MaxMessageBytes != 128<<20 ||
		c.MaxAttempts != DefaultMaxAttempts || c.StallAfter != DefaultStallAfter {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if _, err := New(c, nil); err == nil {
		t.Fatal("nil store accepted")
	}
}

// Every Committed event is published, in order, with the exact envelope and properties;
// other event types are passed over; the checkpoint reaches the last event.
func TestPublishesCommitsInOrder(t *testing.T) {
	e := newEnv(t)
	wsA, wsB := uuid.New(), uuid.New()
	la, lb := listen(t, e.amqp, wsA), listen(t, e.amqp, wsB)

	type sent struct {
		rec eventstore.Record
		c   domain.Committed
	}
	var sentA []sent
	appendEvent(t, e.store, domain.WorkspaceStream(wsA), domain.WorkspaceCreated{WorkspaceID: wsA, Name: "a", OwnerID: uuid.New()})
	for v := int64(1); v <= 5; v++ {
		rec, c := commit(t, e.store, wsA, v)
		sentA = append(sentA, sent{rec, c})
		if v%2 == 0 {
			commit(t, e.store, wsB, v/2)
		}
	}
	last := appendEvent(t, e.store, domain.UserStream(uuid.New()), domain.UserCreated{Name: "u", Email: "u@x"})

	n, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, n.Run)

	waitVersions(t, la, 5, 20*time.Second)
	waitVersions(t, lb, 2, 20*time.Second)
	lastPos := positionOf(t, e.store, last.ID)
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := n.Status(); st.Position != lastPos || !st.Leader || st.Lag != 0 {
			return fmt.Errorf("status %+v, want position %v, leader, no lag", st, lastPos)
		}
		return nil
	})
	if st := n.Status(); st.Published != 7 || st.Skipped != 0 || st.Handled != 9 || st.OutOfOrder != 0 {
		t.Fatalf("counters %+v, want 7 published, 9 handled, none out of order", st)
	}

	msgs := la.all()
	if len(msgs) != 5 {
		t.Fatalf("got %d messages on workspace A, want exactly 5", len(msgs))
	}
	for i, d := range msgs {
		want, err := wire.EncodeNotifyCommit(sentA[i].rec.ID.String(), sentA[i].c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Body, want) {
			t.Fatalf("message %d body\n got %s\nwant %s", i, d.Body, want)
		}
		var env map[string]any
		if err := json.Unmarshal(d.Body, &env); err != nil {
			t.Fatal(err)
		}
		if env["method"] != "notifyCommit" || env["async"] != true || env["id"] != sentA[i].rec.ID.String() {
			t.Fatalf("message %d envelope %s", i, d.Body)
		}
		if d.ContentType != "application/json" || d.Type != "gson" || d.AppId != wsA.String() ||
			d.MessageId != sentA[i].rec.ID.String() || d.DeliveryMode != amqp.Persistent || d.ReplyTo != "" {
			t.Fatalf("message %d properties %+v", i, d)
		}
		if _, err := uuid.Parse(d.CorrelationId); err != nil {
			t.Fatalf("message %d correlation id %q: %v", i, d.CorrelationId, err)
		}
		if i > 0 && d.CorrelationId == msgs[i-1].CorrelationId {
			t.Fatalf("correlation id reused")
		}
	}
	// The checkpoint is in the notifier's own table.
	pool, err := pgxpool.New(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if cp, err := LoadCheckpoint(ctxT(t), pool, "notifier"); err != nil || cp != lastPos {
		t.Fatalf("saved checkpoint %v, %v; want %v", cp, err, lastPos)
	}
}

// A stored commit that does not decode is skipped (never wedging the notifier), and a
// store whose global order disagrees with a workspace's order is reported.
func TestBadStoredCommits(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	commit(t, e.store, ws, 2)
	if _, err := e.store.Append(ctxT(t), domain.WorkspaceStream(ws), eventstore.Any(),
		eventstore.Record{ID: uuid.New(), Type: domain.TypeCommitted, Data: []byte(`{"workspaceId": 7}`)}); err != nil {
		t.Fatal(err)
	}
	commit(t, e.store, ws, 1)
	n, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Handled != 3 {
			return fmt.Errorf("status %+v, want 3 events handled", st)
		}
		return nil
	})
	if st := n.Status(); st.Published != 2 || st.Skipped != 1 || st.OutOfOrder != 1 {
		t.Fatalf("status %+v, want 2 published, 1 skipped, 1 out of order", st)
	}
	if vs := l.versions(t); len(vs) != 2 || vs[0] != 2 || vs[1] != 1 {
		t.Fatalf("published %v, want [2 1] (store order)", vs)
	}
}

// The notifier never publishes beyond the horizon and follows it as it moves.
func TestHorizon(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	var recs []eventstore.Record
	for v := int64(1); v <= 5; v++ {
		rec, _ := commit(t, e.store, ws, v)
		recs = append(recs, rec)
	}
	pos3 := positionOf(t, e.store, recs[2].ID)
	pos5 := positionOf(t, e.store, recs[4].ID)

	var mu sync.Mutex
	horizon := pos3
	calls := atomic.Int64{}
	cfg := fastConfig(t, e)
	cfg.Horizon = func(ctx context.Context) (eventstore.Position, error) {
		if calls.Add(1) == 1 {
			return eventstore.Position{}, errors.New("projection not reachable (first call fails on purpose)")
		}
		mu.Lock()
		defer mu.Unlock()
		return horizon, nil
	}
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position != pos3 || !st.HeldByHorizon || st.Lag <= 0 {
			return fmt.Errorf("status %+v, want position %v held by the horizon with lag", st, pos3)
		}
		return nil
	})
	// Several more polls against the same horizon publish nothing more.
	c0 := calls.Load()
	testenv.Eventually(t, 10*time.Second, func() error {
		if calls.Load() < c0+3 {
			return errors.New("waiting for more polls")
		}
		return nil
	})
	if vs := l.versions(t); len(vs) != 3 || vs[0] != 1 || vs[1] != 2 || vs[2] != 3 {
		t.Fatalf("published %v before the horizon moved, want [1 2 3]", vs)
	}
	mu.Lock()
	horizon = pos5
	mu.Unlock()
	waitVersions(t, l, 5, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := n.Status(); st.Position != pos5 || st.HeldByHorizon || st.Lag != 0 {
			return fmt.Errorf("status %+v, want position %v, caught up", st, pos5)
		}
		return nil
	})
}

// A stopped notifier resumes from its checkpoint: events appended while it was down
// are published after the restart; nothing is lost.
func TestResumesFromCheckpoint(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	for v := int64(1); v <= 3; v++ {
		commit(t, e.store, ws, v)
	}
	n1, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, n1.Run)
	waitVersions(t, l, 3, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n1.Status().Handled < 3 {
			return errors.New("checkpoint not saved yet")
		}
		return nil
	})
	stop()
	for v := int64(4); v <= 7; v++ {
		commit(t, e.store, ws, v)
	}
	n2, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, n2.Run)
	waitVersions(t, l, 7, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := n2.Status(); st.Handled != 4 {
			return fmt.Errorf("second notifier handled %d events, want the 4 after the checkpoint", st.Handled)
		}
		return nil
	})
	if vs := l.versions(t); len(vs) != 7 {
		t.Fatalf("arrivals %v: a clean stop and restart should publish each commit once", vs)
	}
}

// Connections of the notifier closed by the broker mid-stream (as in a broker restart):
// every workspaceVersion still arrives, in order after removing duplicates.
func TestBrokerOutage(t *testing.T) {
	e := newEnv(t)
	wsA, wsB := uuid.New(), uuid.New()
	la, lb := listen(t, e.amqp, wsA), listen(t, e.amqp, wsB)
	cfg := fastConfig(t, e)
	cfg.BatchSize = 16
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)

	// The writer keeps appending until the kills are done, so that each kill lands
	// mid-stream (with publishes and confirms in flight).
	stopWriting := make(chan struct{})
	written := make(chan int64, 1)
	go func() {
		v := int64(0)
		defer func() { written <- v }()
		for {
			select {
			case <-stopWriting:
				return
			case <-time.After(2 * time.Millisecond):
			}
			commit(t, e.store, wsA, v+1)
			commit(t, e.store, wsB, v+1)
			v++
		}
	}()
	const kills = 3
	for k := 0; k < kills; k++ {
		testenv.Eventually(t, 20*time.Second, func() error {
			if killConnections(t, e.amqp, "syncd-notifier") == 0 {
				return errors.New("no notifier connection to close yet")
			}
			return nil
		})
		published := n.Status().Published
		// Wait for the notifier to reconnect and make progress before the next kill.
		testenv.Eventually(t, 20*time.Second, func() error {
			if n.Status().Published <= published {
				return errors.New("no progress after the reconnect yet")
			}
			return nil
		})
	}
	close(stopWriting)
	total := <-written
	waitVersions(t, la, total, 60*time.Second)
	waitVersions(t, lb, total, 60*time.Second)
	t.Logf("after %d closed connections: %d arrivals on A, %d on B for %d commits each",
		kills, len(la.all()), len(lb.all()), total)
}

// A channel-level failure (here: the broker refuses the exchange declare, closing the
// channel with 403) is retried on a new channel, without advancing, until it clears;
// then everything is published.
func TestChannelFailureRetried(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	setConfigurePermission(t, e.amqp, "^amq\\.gen-.*")
	for v := int64(1); v <= 3; v++ {
		commit(t, e.store, ws, v)
	}
	n, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Failures < 2 || st.Published != 0 || !st.Position.IsZero() {
			return fmt.Errorf("status %+v, want repeated failures and nothing published", st)
		}
		return nil
	})
	if vs := l.versions(t); len(vs) != 0 {
		t.Fatalf("published %v while the declare was refused", vs)
	}
	setConfigurePermission(t, e.amqp, ".*")
	waitVersions(t, l, 3, 20*time.Second)
}

// Database sessions terminated mid-stream (as in a PostgreSQL restart): the notifier
// retries and loses nothing.
func TestDatabaseOutage(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	n, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	start(t, n.Run)
	for v := int64(1); v <= 20; v++ {
		commit(t, e.store, ws, v)
	}
	waitVersions(t, l, 20, 20*time.Second)
	if killDatabaseSessions(t, e.dsn) == 0 {
		t.Fatal("no database sessions to terminate")
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		_, err := e.store.Append(ctxT(t), "probe", eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "Probe", Data: []byte("{}")})
		return err
	})
	for v := int64(21); v <= 40; v++ {
		commit(t, e.store, ws, v)
	}
	waitVersions(t, l, 40, 30*time.Second)
	testenv.Eventually(t, 20*time.Second, func() error {
		if !n.Status().Leader {
			return errors.New("notifier is not leading again")
		}
		return nil
	})
}

// Two notifiers with the same name: only the leader publishes; when it stops, the
// other takes over from the checkpoint.
func TestSingleActiveInstance(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	n1, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := New(fastConfig(t, e), e.store)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := start(t, n1.Run)
	stop2 := start(t, n2.Run)
	for v := int64(1); v <= 30; v++ {
		commit(t, e.store, ws, v)
	}
	waitVersions(t, l, 30, 20*time.Second)
	if vs := l.versions(t); len(vs) != 30 {
		t.Fatalf("two notifiers published %d messages for 30 commits: %v", len(vs), vs)
	}
	s1, s2 := n1.Status(), n2.Status()
	if s1.Leader == s2.Leader || s1.Published+s2.Published != 30 || (s1.Published != 0 && s2.Published != 0) {
		t.Fatalf("statuses %+v and %+v: want exactly one leader publishing everything", s1, s2)
	}
	leader, standby, stopLeader := n1, n2, stop1
	if s2.Leader {
		leader, standby, stopLeader = n2, n1, stop2
	}
	_ = leader
	stopLeader()
	for v := int64(31); v <= 40; v++ {
		commit(t, e.store, ws, v)
	}
	waitVersions(t, l, 40, 20*time.Second)
	if st := standby.Status(); !st.Leader || st.Published < 10 {
		t.Fatalf("standby status %+v after the leader stopped", st)
	}
}
