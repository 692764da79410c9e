package notify

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// fixedPos is a checkpoint a test moves by hand.
type fixedPos struct {
	p atomic.Pointer[eventstore.Position]
}

func (f *fixedPos) set(p eventstore.Position) { f.p.Store(&p) }
func (f *fixedPos) get(context.Context) (eventstore.Position, error) {
	if p := f.p.Load(); p != nil {
		return *p, nil
	}
	return eventstore.Position{}, nil
}

func at(n uint64) eventstore.Position { return eventstore.Position{Commit: n, Prepare: n} }

func directCommit(ws uuid.UUID, v int64, prev, membersAt eventstore.Position) Commit {
	return Commit{EventID: uuid.New(), Inline: true, Prev: prev, MembersAt: membersAt, Position: at(uint64(100 + v)),
		Event: domain.Committed{WorkspaceID: ws, WorkspaceVersion: v, RequestID: fmt.Sprintf("req-%d", v),
			UserID: uuid.New(), DeviceID: uuid.New(), CommittedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
}

// runDirect runs a Direct publisher on e's broker, its binder position at 10 and the
// notifier's checkpoint at the start, both for the test to move.
func runDirect(t *testing.T, e *env) (d *Direct, bound, published *fixedPos) {
	t.Helper()
	bound, published = &fixedPos{}, &fixedPos{}
	bound.set(at(10))
	d, err := NewDirect(DirectConfig{AMQPURL: e.amqp, Bound: bound.get, Published: published.get, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, d.Run)
	return d, bound, published
}

// declareMarker does what a binder does once the bindings are in place.
func declareMarker(t *testing.T, url string) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.DeclareMarker(ch); err != nil {
		t.Fatal(err)
	}
}

// Direct publishes only what the notifier would publish at that moment: nothing before
// the binder's topology marker exists (a restarted broker lost the bindings); then a
// workspace's commits in order, each once the binder passed the workspace's latest
// membership change; a commit whose predecessor did not go out on its channel only once
// the notifier's checkpoint passed that predecessor. Ahead reports what the broker
// confirmed, so the notifier skips exactly those.
func TestDirectPublishesOnlyWhatTheNotifierWould(t *testing.T) {
	e := newEnv(t)
	d, bound, published := runDirect(t, e)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	ctx := context.Background()

	// Connected, but no marker yet: declined, and nothing reaches the queue.
	testenv.Eventually(t, 20*time.Second, func() error {
		if !d.waiting.Load() {
			return fmt.Errorf("not yet waiting for the topology marker")
		}
		return nil
	})
	c1 := directCommit(ws, 1, at(1), at(1))
	if d.Publish(ctx, c1) {
		t.Fatal("published before the topology marker existed")
	}
	declareMarker(t, e.amqp)
	testenv.Eventually(t, 20*time.Second, func() error {
		if !d.Publish(ctx, c1) {
			return fmt.Errorf("still declining with the marker present")
		}
		return nil
	})
	if !d.Ahead(ctx, c1.EventID) {
		t.Fatal("Ahead: the broker's confirm of version 1 not reported")
	}
	waitVersions(t, l, 1, 20*time.Second)

	// The binder has not passed a membership change: declined; once it has, published.
	c2 := directCommit(ws, 2, c1.Position, at(50))
	if d.Publish(ctx, c2) {
		t.Fatal("published before the binder passed the membership change")
	}
	bound.set(at(50))
	if !d.Publish(ctx, c2) {
		t.Fatal("declined with the binder past the membership change")
	}
	// Version 3 was left to the notifier (say, appended elsewhere): version 4 waits for
	// the notifier's checkpoint to pass version 3.
	c4 := directCommit(ws, 4, at(103), at(50))
	if d.Publish(ctx, c4) || d.Ahead(ctx, c4.EventID) {
		t.Fatal("published version 4 after 2, before version 3 went out")
	}
	published.set(at(103))
	if !d.Publish(ctx, c4) || !d.Ahead(ctx, c4.EventID) {
		t.Fatal("declined version 4 once the notifier passed version 3")
	}
	if d.Ahead(ctx, uuid.New()) {
		t.Fatal("Ahead of an event never published")
	}
	// While the broker blocks publishers (connection.blocked), a publish would sit in a
	// socket write holding the commit's workspace: declined, left to the notifier.
	d.blocked.Store(true)
	blockedCommit := directCommit(ws, 5, c4.Position, at(50))
	if d.Publish(ctx, blockedCommit) {
		t.Fatal("published while the broker blocks publishers")
	}
	d.blocked.Store(false)
	if !c4.Inline {
		t.Fatal("fixture")
	}
	c5 := directCommit(ws, 5, c4.Position, at(50))
	c5.Inline = false // the read models do not have it yet
	if d.Publish(ctx, c5) {
		t.Fatal("published a commit whose append did not write the read models")
	}
	testenv.Eventually(t, 20*time.Second, func() error { // 1, 2, 4 as sent (3 is the notifier's)
		if firsts, ordered := dedup(l.versions(t)); !ordered || fmt.Sprint(firsts) != "[1 2 4]" {
			return fmt.Errorf("delivered %v", l.versions(t))
		}
		return nil
	})
	sent, declined := d.Counts()
	if sent != 3 || declined < 4 {
		t.Fatalf("counts: sent %d, declined %d", sent, declined)
	}
}

// A publish the broker refused (a nack) breaks the workspace's order on the channel:
// the next version is declined until the notifier's checkpoint passes the refused one
// (the notifier publishes it again first). Here the broker nacks because the
// workspace's only queue refuses every message (max-length 0, reject-publish).
func TestDirectAfterANack(t *testing.T) {
	e := newEnv(t)
	d, _, published := runDirect(t, e)
	declareMarker(t, e.amqp)
	ws := uuid.New()
	ch := exchangeChannel(t, e.amqp, ws)
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", topology.EventExchange(ws), false, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c1 := directCommit(ws, 1, eventstore.Position{}, at(1))
	testenv.Eventually(t, 20*time.Second, func() error {
		if !d.Publish(ctx, c1) {
			return fmt.Errorf("declined version 1")
		}
		return nil
	})
	if d.Ahead(ctx, c1.EventID) {
		t.Fatal("Ahead: a refused publish reported as confirmed")
	}
	c2 := directCommit(ws, 2, c1.Position, at(1))
	if d.Publish(ctx, c2) {
		t.Fatal("published version 2 right after the broker refused version 1")
	}
	published.set(c1.Position) // the notifier published version 1 again
	if !d.Publish(ctx, c2) {
		t.Fatal("declined version 2 once the notifier passed version 1")
	}
}

// fakeConfirm is a publish's confirm as settle reads it: pending until resolved.
type fakeConfirm struct {
	done  chan struct{}
	acked bool
}

func (f *fakeConfirm) Done() <-chan struct{} { return f.done }
func (f *fakeConfirm) Acked() bool           { return f.acked }

// settle drops the leading acked confirms and sees a refused publish anywhere in the
// list, also behind publishes the broker acked after it (v5 nacked, v6 acked: v7 must
// not go out as if in order).
func TestSettle(t *testing.T) {
	pending := func() *fakeConfirm { return &fakeConfirm{done: make(chan struct{})} }
	resolved := func(acked bool) *fakeConfirm {
		f := pending()
		f.acked = acked
		close(f.done)
		return f
	}
	ack, nack, wait := resolved(true), resolved(false), pending()
	for _, c := range []struct {
		name   string
		in     []confirmation
		rest   int
		nacked bool
	}{
		{"none", nil, 0, false},
		{"all acked", []confirmation{ack, ack}, 0, false},
		{"acked, then pending", []confirmation{ack, wait, ack}, 2, false},
		{"nacked behind an acked one", []confirmation{nack, ack}, 2, true},
		{"nacked behind a pending one", []confirmation{wait, nack}, 2, true},
	} {
		rest, nacked := settle(c.in)
		if len(rest) != c.rest || nacked != c.nacked {
			t.Errorf("%s: %d left, nacked %v; want %d, %v", c.name, len(rest), nacked, c.rest, c.nacked)
		}
	}
}
