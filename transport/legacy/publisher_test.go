package legacy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/topology"
)

type pubEnv struct {
	dsn, amqp string
	store     eventstore.Store
	pool      *pgxpool.Pool
	ch        *amqp.Channel
}

func newPubEnv(t *testing.T) *pubEnv {
	t.Helper()
	e := &pubEnv{dsn: testenv.PostgresDSN(t), amqp: testenv.AMQPURL(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{DSN: e.dsn, MaxConns: 4})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	if e.pool, err = pgxpool.New(ctx, e.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if err := Migrate(ctx, e.pool); err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(e.amqp)
	if err != nil {
		testenv.Missing(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { conn.Close() })
	if e.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	return e
}

// commit appends a Committed event of one new folder to ws's stream.
func (e *pubEnv) commit(t *testing.T, ws uuid.UUID, version int64) eventstore.RecordedEvent {
	t.Helper()
	id := domain.ItemID(version)
	c := domain.Committed{WorkspaceID: ws, WorkspaceVersion: version, RequestID: fmt.Sprintf("req-%d", version),
		CommittedAt: time.UnixMilli(1796000000000).UTC(), LimitQuota: 10, UsedQuota: 0,
		Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &domain.ItemMetadata{
			ID: &id, Version: 1, WorkspaceID: ws, Status: domain.StatusNew, IsFolder: true, Filename: "f", Chunks: []string{}}}}}
	typ, data, err := domain.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream := "workspace-" + ws.String()
	if _, err := e.store.Append(ctx, stream, eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: typ, Data: data}); err != nil {
		t.Fatal(err)
	}
	evs, err := e.store.ReadStream(ctx, stream, uint64(version), 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read back: %v", err)
	}
	return evs[0]
}

// listen binds a fresh queue to multi#<ws>, as a desktop does.
func (e *pubEnv) listen(t *testing.T, ws uuid.UUID) (string, <-chan amqp.Delivery) {
	t.Helper()
	if err := topology.DeclareEventExchange(e.ch, ws); err != nil {
		t.Fatal(err)
	}
	q, err := e.ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(q.Name, "", topology.EventExchange(ws), false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Name, msgs
}

func (e *pubEnv) run(t *testing.T, horizon func(context.Context) (eventstore.Position, error)) (stop func()) {
	t.Helper()
	cfg := DefaultPublisherConfig()
	cfg.DSN, cfg.DB, cfg.AMQPURL, cfg.Horizon, cfg.PollMax = e.dsn, e.pool, e.amqp, horizon, 20*time.Millisecond
	p, err := NewPublisher(cfg, e.store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (e *pubEnv) waitCheckpoint(t *testing.T, pos eventstore.Position) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		got, err := LoadCheckpoint(context.Background(), e.pool, "legacy-notifier")
		if err != nil {
			return err
		}
		if got != pos {
			return fmt.Errorf("checkpoint %s, want %s", got, pos)
		}
		return nil
	})
}

func requestIDOf(t *testing.T, d amqp.Delivery) string {
	t.Helper()
	v, err := js.Decode(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	n := v.(*js.Object).Get("params").(*js.Array).Elems[0].(*js.Object)
	rid, _, _ := js.AsString(n.Get("requestId"))
	return rid
}

// The publisher sends each durable commit as a Java notifyCommit to multi#<ws>
// (correlation_id = the event's id), never beyond its horizon, saves its checkpoint
// after the broker confirmed, and does not send again what it passed after a restart.
func TestPublisherHorizonAndCheckpoint(t *testing.T) {
	e := newPubEnv(t)
	ws := uuid.New()
	q, msgs := e.listen(t, ws)
	ev1 := e.commit(t, ws, 1)
	ev2 := e.commit(t, ws, 2)
	var horizon atomic.Pointer[eventstore.Position]
	horizon.Store(&ev1.Position)
	stop := e.run(t, func(context.Context) (eventstore.Position, error) { return *horizon.Load(), nil })

	e.waitCheckpoint(t, ev1.Position)
	info, err := e.ch.QueueDeclarePassive(q, false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-msgs:
		if d.CorrelationId != ev1.ID.String() || d.Type != TypeJava || d.AppId != ws.String() || requestIDOf(t, d) != "req-1" {
			t.Fatalf("first notification: corr %s type %s app %s", d.CorrelationId, d.Type, d.AppId)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no notification (queue held %d)", info.Messages)
	}
	// Nothing beyond the horizon: the checkpoint stays at ev1 and the queue is empty.
	if got, _ := LoadCheckpoint(context.Background(), e.pool, "legacy-notifier"); got != ev1.Position {
		t.Fatalf("checkpoint moved past the horizon to %s", got)
	}
	if info, err := e.ch.QueueDeclarePassive(q, false, false, true, false, nil); err != nil || info.Messages != 0 {
		t.Fatalf("queue holds %d messages beyond the horizon (%v)", info.Messages, err)
	}

	// Restart with the horizon open: ev2 is next, ev1 is not sent again.
	stop()
	horizon.Store(&ev2.Position)
	e.run(t, func(context.Context) (eventstore.Position, error) { return *horizon.Load(), nil })
	select {
	case d := <-msgs:
		if rid := requestIDOf(t, d); rid != "req-2" {
			t.Fatalf("after the restart got %s, want req-2", rid)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no notification after the restart")
	}
	e.waitCheckpoint(t, ev2.Position)
}
