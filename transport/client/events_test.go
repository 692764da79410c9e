package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// bindTo binds the device's queue to workspace ws's exchange, as the binder does.
func (e *env) bindTo(dev, ws uuid.UUID) {
	e.t.Helper()
	conn, err := amqp.Dial(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := topology.Bind(ch, e.user, dev, ws); err != nil {
		e.t.Fatal(err)
	}
}

// commitTo commits one item to ws through c and returns the recorded result.
func commitTo(t *testing.T, e *env, c *client.Client, ws uuid.UUID, name string, tempID int64) service.CommitResult {
	t.Helper()
	req := &client.CommitRequest{WorkspaceID: ws, Items: []domain.ItemMetadata{newItem(tempID, name)}}
	if err := c.Commit(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	var res service.CommitResult
	testenv.Eventually(t, 5*time.Second, func() error {
		var ok bool
		if res, ok = e.svc.CommitResultOf(ws, req.RequestID); !ok {
			return errors.New("commit not recorded yet")
		}
		return nil
	})
	return res
}

// refuseChangesSince makes the service answer err to getChangesSince while armed, and
// counts the calls it refused.
type refuseChangesSince struct {
	err     error
	armed   atomic.Bool
	onlyOne bool // disarm after the first refusal
	refused atomic.Int64

	mu sync.Mutex
	at []time.Time // when each refusal happened
}

func (r *refuseChangesSince) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

func (r *refuseChangesSince) hook(_ context.Context, call rpctest.Call) error {
	if call.Method != "ChangesSince" {
		return nil
	}
	if r.onlyOne {
		if !r.armed.CompareAndSwap(true, false) {
			return nil
		}
	} else if !r.armed.Load() {
		return nil
	}
	r.refused.Add(1)
	r.mu.Lock()
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	return r.err
}

// TestGapCatchUpUnauthorizedIsSkipped: the user was removed from a shared workspace
// while offline, so the catch-up of a gap in it answers Unauthorized. The event is
// dropped (acked) instead of blocking the queue, the workspace is no longer tracked,
// and the events of another workspace queued behind it still arrive.
func TestGapCatchUpUnauthorizedIsSkipped(t *testing.T) {
	e := newEnv(t)
	shared := e.svc.AddWorkspace(uuid.New(), "team")
	e.svc.AddMember(shared, e.user)
	c := e.dial()
	ctx := ctxT(t)
	dev, err := c.UpdateDevice(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.bindTo(dev, e.ws)
	e.bindTo(dev, shared)
	commitTo(t, e, c, shared, "s1", 1) // caught up at start
	var col collector
	if err := c.Subscribe(client.SubscribeOptions{Handler: col.handle}); err != nil {
		t.Fatal(err)
	}
	if u := col.waitFor(t, 1)[0]; u.WorkspaceID != shared || u.ToVersion != 1 {
		t.Fatalf("start-up catch-up = %+v", u)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := e.svc.CountCalls("ChangesSince", ""); n < 2 {
			return fmt.Errorf("%d getChangesSince calls: start-up catch-up not done", n)
		}
		return nil
	})
	commitTo(t, e, c, shared, "s2", 2)
	s3 := commitTo(t, e, c, shared, "s3", 3)

	refuse := &refuseChangesSince{err: fmt.Errorf("removed from the workspace: %w", protocol.ErrUnauthorized)}
	refuse.armed.Store(true)
	e.svc.SetHook(refuse.hook)
	// Version 3 of the shared workspace with version 2 never notified: a gap whose
	// catch-up is refused. Then version 1 of the personal workspace, in order.
	if err := rpctest.PublishNotification(ctx, e.url, s3); err != nil {
		t.Fatal(err)
	}
	p1 := commitTo(t, e, c, e.ws, "p1", 3)
	if err := rpctest.PublishNotification(ctx, e.url, p1); err != nil {
		t.Fatal(err)
	}
	ups := col.waitFor(t, 2)
	if u := ups[1]; u.WorkspaceID != e.ws || u.Commit == nil || u.FromVersion != 0 || u.ToVersion != 1 {
		t.Fatalf("update after the refused catch-up = %+v", u)
	}
	if n := refuse.refused.Load(); n != 1 {
		t.Errorf("getChangesSince refused %d times, want 1 (the skipped event was retried)", n)
	}
	vs := c.Versions()
	if _, ok := vs[shared]; ok || vs[e.ws] != 1 {
		t.Errorf("Versions = %v, want the shared workspace forgotten and the personal one at 1", vs)
	}
	// The skipped event was acked: no redelivery asks for another catch-up.
	p2 := commitTo(t, e, c, e.ws, "p2", 4)
	if err := rpctest.PublishNotification(ctx, e.url, p2); err != nil {
		t.Fatal(err)
	}
	ups = col.waitFor(t, 3)
	if u := ups[2]; u.WorkspaceID != e.ws || u.ToVersion != 2 {
		t.Fatalf("third update = %+v", u)
	}
	if n := refuse.refused.Load(); n != 1 || len(ups) != 3 {
		t.Errorf("after more events: %d refusals, %d updates", n, len(ups))
	}
}

// TestGapCatchUpInvalidRequestResetsToZero: the device's version of a workspace is
// ahead of the server's (say, restored from a backup), so the server refuses the
// catch-up as InvalidRequest. The client starts that workspace over from 0 and
// recovers: it gets one page from 0 and the following notifications in order.
func TestGapCatchUpInvalidRequestResetsToZero(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := ctxT(t)
	dev, err := c.UpdateDevice(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.bindWorkspace(dev)
	commitTo(t, e, c, e.ws, "one", 1)
	var col collector
	// The device says it has version 1 (it never gets its items: the server will
	// refuse the next catch-up from 1 as if the device were ahead).
	e.subscribe(c, &col, client.SubscribeOptions{Versions: map[uuid.UUID]int64{e.ws: 1}})
	commitTo(t, e, c, e.ws, "two", 2)
	v3 := commitTo(t, e, c, e.ws, "three", 3)

	refuse := &refuseChangesSince{err: fmt.Errorf("sinceVersion ahead of the workspace: %w", protocol.ErrInvalid), onlyOne: true}
	refuse.armed.Store(true)
	e.svc.SetHook(refuse.hook)
	// A gap (3 after 1): the catch-up from 1 is refused, the one from 0 answers.
	if err := rpctest.PublishNotification(ctx, e.url, v3); err != nil {
		t.Fatal(err)
	}
	ups := col.waitFor(t, 1)
	if u := ups[0]; u.Commit != nil || u.FromVersion != 0 || u.ToVersion != 3 || len(u.Items) != 3 {
		t.Fatalf("catch-up from 0 = %+v", u)
	}
	if n := refuse.refused.Load(); n != 1 {
		t.Errorf("%d refusals, want 1", n)
	}
	v4 := commitTo(t, e, c, e.ws, "four", 4)
	if err := rpctest.PublishNotification(ctx, e.url, v4); err != nil {
		t.Fatal(err)
	}
	ups = col.waitFor(t, 2)
	if u := ups[1]; u.Commit == nil || u.FromVersion != 3 || u.ToVersion != 4 {
		t.Fatalf("update after the reset = %+v", u)
	}
	if v := c.Versions()[e.ws]; v != 4 || len(ups) != 2 {
		t.Errorf("Versions = %v after %d updates", c.Versions(), len(ups))
	}
}

// restartWaits records the waits the client's event consumer chooses before starting
// over (the "after" of its "event consumer failed; restarting" log), and passes every
// record on to next.
type restartWaits struct {
	next  slog.Handler
	mu    *sync.Mutex
	waits *[]time.Duration
}

func newRestartWaits(next slog.Handler) restartWaits {
	return restartWaits{next: next, mu: &sync.Mutex{}, waits: new([]time.Duration)}
}

func (h restartWaits) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h restartWaits) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "event consumer failed; restarting" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "after" && a.Value.Kind() == slog.KindDuration {
				h.mu.Lock()
				*h.waits = append(*h.waits, a.Value.Duration())
				h.mu.Unlock()
			}
			return true
		})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h restartWaits) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	return h
}

func (h restartWaits) WithGroup(name string) slog.Handler {
	h.next = h.next.WithGroup(name)
	return h
}

func (h restartWaits) get() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.waits)
}

// TestGapCatchUpTransientFailureIsRetriedWithBackoff: while getChangesSince fails with
// Internal, the gap's event stays unacked and is retried, with a growing wait between
// attempts (not in a hot loop); once the service answers again it is delivered.
func TestGapCatchUpTransientFailureIsRetriedWithBackoff(t *testing.T) {
	e := newEnv(t)
	waits := newRestartWaits(rpctest.TestLogger(t).Handler())
	c := e.dial(func(c *client.Config) { c.Logger = slog.New(waits) }) // MinBackoff 50ms, MaxBackoff 500ms
	ctx := ctxT(t)
	dev, err := c.UpdateDevice(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.bindWorkspace(dev)
	var col collector
	e.subscribe(c, &col, client.SubscribeOptions{})
	commitTo(t, e, c, e.ws, "one", 1)
	v2 := commitTo(t, e, c, e.ws, "two", 2)

	refuse := &refuseChangesSince{err: errors.New("database down")} // Internal
	refuse.armed.Store(true)
	e.svc.SetHook(refuse.hook)
	if err := rpctest.PublishNotification(ctx, e.url, v2); err != nil {
		t.Fatal(err)
	}
	const attempts = 6
	testenv.Eventually(t, 20*time.Second, func() error {
		if n, w := refuse.refused.Load(), len(waits.get()); n < attempts || w < attempts-1 {
			return fmt.Errorf("%d refusals, %d restarts: the event is not being retried", n, w)
		}
		return nil
	})
	// Each attempt is one catch-up call, and the consumer's chosen wait before the next
	// one doubles from MinBackoff up to MaxBackoff: 50, 100, 200, 400, 500ms.
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond}
	if got := waits.get()[:len(want)]; !slices.Equal(got, want) {
		t.Errorf("waits before restarting %v, want %v", got, want)
	}
	// And the consumer did wait: the next attempt comes after the chosen wait, never
	// sooner (a lower bound only; the wait starts after the refusal, so it cannot fail
	// on a slow machine).
	at := refuse.times()
	for i, w := range want {
		if gap := at[i+1].Sub(at[i]); gap < w {
			t.Errorf("attempt %d came %v after attempt %d, before the chosen wait of %v: a hot loop", i+2, gap, i+1, w)
		}
	}
	if len(col.snapshot()) != 0 {
		t.Fatalf("updates delivered while the catch-up fails: %+v", col.snapshot())
	}
	refuse.armed.Store(false)
	ups := col.waitFor(t, 1)
	if u := ups[0]; u.Commit != nil || u.FromVersion != 0 || u.ToVersion != 2 {
		t.Fatalf("catch-up after recovery = %+v", u)
	}
}
