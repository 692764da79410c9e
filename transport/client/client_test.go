package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

type env struct {
	t     *testing.T
	url   string // guest on the test's vhost
	svc   *rpctest.Service
	user  uuid.UUID
	ws    uuid.UUID
	login string // the user's own broker login
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, url: testenv.AMQPURL(t), svc: rpctest.NewService(), user: uuid.New()}
	e.ws = e.svc.AddUser(e.user, "alice", "alice@example.com")
	e.login = rpctest.BrokerUser(t, testenv.ManagementURL(), e.url, e.user)
	rpctest.StartServer(t, rpc.Config{URL: e.url, Concurrency: 4, RequestTimeout: 5 * time.Second}, e.svc)
	return e
}

func (e *env) dial(tweak ...func(*client.Config)) *client.Client {
	e.t.Helper()
	cfg := client.Config{URL: e.login, UserID: e.user, DeviceName: "test", Timeout: 2 * time.Second,
		Logger: rpctest.TestLogger(e.t), MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// subscribe starts c's event consumer with opts, delivering to col, and waits for its
// start-up catch-up.
func (e *env) subscribe(c *client.Client, col *collector, opts client.SubscribeOptions) {
	e.t.Helper()
	opts.Handler = col.handle
	if err := c.Subscribe(opts); err != nil {
		e.t.Fatal(err)
	}
	testenv.Eventually(e.t, 5*time.Second, func() error {
		if e.svc.CountCalls("ChangesSince", "") == 0 {
			return errors.New("no start-up catch-up yet")
		}
		return nil
	})
}

// bindWorkspace binds the device's queue to the workspace's exchange, as the server's
// binder does for a member's devices (updateDevice binds only the user's exchange).
func (e *env) bindWorkspace(dev uuid.UUID) {
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
	if err := topology.Bind(ch, e.user, dev, e.ws); err != nil {
		e.t.Fatal(err)
	}
}

func newItem(tempID int64, name string) domain.ItemMetadata {
	return domain.ItemMetadata{TempID: &tempID, Version: 1, Status: domain.StatusNew, ModifiedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Checksum: 1, Chunks: []string{"c"}, Size: 3, Filename: name, Mimetype: "text/plain"}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCalls(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := ctxT(t)

	acct, err := c.GetAccountInfo(ctx, "alice@example.com")
	if err != nil || acct.UserID != e.user || acct.Name != "alice" {
		t.Fatalf("GetAccountInfo = %+v, %v", acct, err)
	}
	if _, err := c.GetAccountInfo(ctx, "nobody@example.com"); !errors.Is(err, protocol.ErrUserNotFound) {
		t.Errorf("unknown e-mail: %v", err)
	}
	dev, err := c.UpdateDevice(ctx, nil)
	if err != nil || c.DeviceID() != dev {
		t.Fatalf("UpdateDevice = %s, %v", dev, err)
	}
	if again, err := c.UpdateDevice(ctx, &dev); err != nil || again != dev {
		t.Errorf("UpdateDevice(existing) = %s, %v", again, err)
	}
	bogus := uuid.New()
	if _, err := c.UpdateDevice(ctx, &bogus); !errors.Is(err, protocol.ErrDeviceNotValid) {
		t.Errorf("UpdateDevice(unknown) = %v", err)
	}
	wss, err := c.GetWorkspaces(ctx)
	if err != nil || len(wss) != 1 || wss[0].ID != e.ws || wss[0].OwnerID != e.user {
		t.Fatalf("GetWorkspaces = %+v, %v", wss, err)
	}
	req := &client.CommitRequest{WorkspaceID: e.ws, Items: []domain.ItemMetadata{newItem(1, "a"), newItem(2, "b")}}
	if err := c.Commit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if req.RequestID == "" {
		t.Error("Commit did not fill in the requestId")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if _, ok := e.svc.CommitResultOf(e.ws, req.RequestID); !ok {
			return errors.New("commit not recorded yet")
		}
		return nil
	})
	items, err := c.GetChanges(ctx, e.ws)
	if err != nil || len(items) != 2 || items[0].Filename != "a" || items[0].ID == nil || items[0].DeviceID != dev {
		t.Fatalf("GetChanges = %+v, %v", items, err)
	}
	page, err := c.GetChangesSince(ctx, e.ws, 0, 1)
	if err != nil || page.ToVersion != 1 || page.HasMore || len(page.Items) != 2 {
		t.Errorf("GetChangesSince = %+v, %v", page, err)
	}
	versions, err := c.GetItemVersions(ctx, e.ws, *items[1].ID)
	if err != nil || len(versions) != 1 || versions[0].Filename != "b" {
		t.Errorf("GetItemVersions = %+v, %v", versions, err)
	}
	if err := c.UpdateWorkspace(ctx, e.ws, "Home", nil); err != nil {
		t.Errorf("UpdateWorkspace: %v", err)
	}
	_, err = c.GetChanges(ctx, uuid.New())
	var ce *client.Error
	if !errors.Is(err, protocol.ErrWorkspaceNotFound) || !errors.As(err, &ce) || ce.Code != wire.CodeWorkspaceNotFound || ce.Message == "" {
		t.Errorf("GetChanges(unknown) = %v", err)
	}
}

func TestTrustModeWithoutUserID(t *testing.T) {
	e := &env{t: t, url: testenv.AMQPURL(t), svc: rpctest.NewService(), user: uuid.New()}
	e.ws = e.svc.AddUser(e.user, "alice", "alice@example.com")
	rpctest.StartServer(t, rpc.Config{URL: e.url, Auth: rpc.AuthTrust}, e.svc)
	e.login = e.url // the shared guest login
	c := e.dial()
	if _, err := c.GetWorkspaces(ctxT(t)); err != nil {
		t.Fatalf("GetWorkspaces in trust mode: %v", err)
	}
	// The same client against a broker-mode server is refused: no user_id. The server
	// answers nobody without a verified identity, so the call times out.
	e2 := newEnv(t)
	e2.login = e2.url
	c2 := e2.dial(func(cfg *client.Config) { cfg.UserID = e2.user; cfg.Retries = 1; cfg.Timeout = 500 * time.Millisecond })
	if _, err := c2.GetWorkspaces(ctxT(t)); !errors.Is(err, client.ErrTimeout) {
		t.Errorf("broker mode without user_id: %v, want no answer", err)
	}
	if n := e2.svc.CountCalls("Workspaces", ""); n != 0 {
		t.Errorf("an unverified request reached the service %d times", n)
	}
}

// TestRetrySendsTheSameRequest loses the first reply (the service holds the first
// copy until the test ends) and checks that the client re-sent the very same request.
func TestRetrySendsTheSameRequest(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var once sync.Once
	e.svc.SetHook(func(ctx context.Context, call rpctest.Call) error {
		if call.Method != "UpdateWorkspace" {
			return nil
		}
		first := false
		once.Do(func() { first = true })
		if first {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return errors.New("this reply is never read")
		}
		return nil
	})
	// A spy queue sees every copy of every request.
	conn, err := amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spy, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := spy.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.QueueBind(q.Name, topology.RequestQueue, topology.RPCExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	copies, err := spy.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	c := e.dial(func(cfg *client.Config) { cfg.Timeout = 400 * time.Millisecond })
	if err := c.UpdateWorkspace(ctxT(t), e.ws, "Home", nil); err != nil {
		t.Fatalf("UpdateWorkspace with a lost reply: %v", err)
	}
	var got []amqp.Delivery
	for len(got) < 2 {
		select {
		case d := <-copies:
			got = append(got, d)
		case <-time.After(5 * time.Second):
			t.Fatalf("spy saw %d copies", len(got))
		}
	}
	if got[0].CorrelationId != got[1].CorrelationId || string(got[0].Body) != string(got[1].Body) {
		t.Errorf("the retry differs:\n%s %s\n%s %s", got[0].CorrelationId, got[0].Body, got[1].CorrelationId, got[1].Body)
	}
	if !strings.Contains(string(got[0].Body), `"requestId"`) {
		t.Errorf("no requestId in %s", got[0].Body)
	}
	calls := e.svc.CountCalls("UpdateWorkspace", "")
	var ids []string
	for _, call := range e.svc.Calls() {
		if call.Method == "UpdateWorkspace" {
			ids = append(ids, call.RequestID)
		}
	}
	if calls != 2 || ids[0] != ids[1] {
		t.Errorf("service saw %d UpdateWorkspace calls with requestIds %v", calls, ids)
	}
}

// collector gathers delivered updates.
type collector struct {
	mu      sync.Mutex
	updates []client.Update
}

func (c *collector) handle(u client.Update) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates = append(c.updates, u)
}

func (c *collector) snapshot() []client.Update {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.Update(nil), c.updates...)
}

func (c *collector) waitFor(t *testing.T, n int) []client.Update {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := len(c.snapshot()); got < n {
			return fmt.Errorf("%d updates, want %d", got, n)
		}
		return nil
	})
	return c.snapshot()
}

// commitVia commits through c and returns the recorded result (the test plays the
// notifier, publishing notifications itself).
func commitVia(t *testing.T, e *env, c *client.Client, name string, tempID int64) service.CommitResult {
	t.Helper()
	req := &client.CommitRequest{WorkspaceID: e.ws, Items: []domain.ItemMetadata{newItem(tempID, name)}}
	if err := c.Commit(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	var res service.CommitResult
	testenv.Eventually(t, 5*time.Second, func() error {
		var ok bool
		if res, ok = e.svc.CommitResultOf(e.ws, req.RequestID); !ok {
			return errors.New("commit not recorded yet")
		}
		return nil
	})
	return res
}

func TestEventsInOrderWithGapCatchUp(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := ctxT(t)
	dev, err := c.UpdateDevice(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.bindWorkspace(dev)
	// Version 1 exists before the subscription: the start-up catch-up delivers it.
	v1 := commitVia(t, e, c, "one", 1)
	var col collector
	if err := c.Subscribe(client.SubscribeOptions{Handler: col.handle}); err != nil {
		t.Fatal(err)
	}
	ups := col.waitFor(t, 1)
	if u := ups[0]; u.Commit != nil || u.FromVersion != 0 || u.ToVersion != 1 || len(u.Items) != 1 || u.Items[0].Filename != "one" {
		t.Fatalf("start-up catch-up = %+v", u)
	}
	// Its late notification is a duplicate.
	if err := rpctest.PublishNotification(ctx, e.url, v1); err != nil {
		t.Fatal(err)
	}
	// Version 2 notified in order.
	v2 := commitVia(t, e, c, "two", 2)
	if err := rpctest.PublishNotification(ctx, e.url, v2); err != nil {
		t.Fatal(err)
	}
	ups = col.waitFor(t, 2)
	if u := ups[1]; u.Commit == nil || u.Commit.WorkspaceVersion != 2 || u.FromVersion != 1 || u.Commit.RequestID != v2.Event.RequestID {
		t.Fatalf("update 2 = %+v", u)
	}
	// Versions 3 and 4 committed, only 4 notified: a gap, caught up from 2.
	sinceBefore := e.svc.CountCalls("ChangesSince", "")
	commitVia(t, e, c, "three", 3)
	v4 := commitVia(t, e, c, "four", 4)
	if err := rpctest.PublishNotification(ctx, e.url, v4); err != nil {
		t.Fatal(err)
	}
	ups = col.waitFor(t, 3)
	if u := ups[2]; u.Commit != nil || u.FromVersion != 2 || u.ToVersion != 4 || len(u.Items) != 2 {
		t.Fatalf("gap catch-up = %+v", u)
	}
	if e.svc.CountCalls("ChangesSince", "") <= sinceBefore {
		t.Error("the gap did not call getChangesSince")
	}
	// CommitAndWait returns the commit's own notification.
	type result struct {
		n   wire.CommitNotification
		err error
	}
	done := make(chan result, 1)
	req := &client.CommitRequest{RequestID: "wait-5", WorkspaceID: e.ws, Items: []domain.ItemMetadata{newItem(5, "five")}}
	go func() {
		n, err := c.CommitAndWait(ctx, req)
		done <- result{n, err}
	}()
	var v5 service.CommitResult
	testenv.Eventually(t, 5*time.Second, func() error {
		var ok bool
		if v5, ok = e.svc.CommitResultOf(e.ws, "wait-5"); !ok {
			return errors.New("commit not recorded yet")
		}
		return nil
	})
	if err := rpctest.PublishNotification(ctx, e.url, v5); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.n.RequestID != "wait-5" || r.n.WorkspaceVersion != 5 {
		t.Fatalf("CommitAndWait = %+v, %v", r.n, r.err)
	}
	ups = col.waitFor(t, 4)
	// Every version once, in order.
	var next int64 = 1
	for _, u := range ups {
		if u.FromVersion != next-1 {
			t.Errorf("update %+v does not start at %d", u, next-1)
		}
		next = u.ToVersion + 1
	}
	if len(ups) != 4 || next != 6 {
		t.Errorf("updates cover up to %d in %d deliveries", next-1, len(ups))
	}
	if v := c.Versions()[e.ws]; v != 5 {
		t.Errorf("Versions = %v", c.Versions())
	}
	// A commit refused as a whole comes back as an error.
	_, err = c.CommitAndWait(ctx, &client.CommitRequest{WorkspaceID: uuid.New(), Items: []domain.ItemMetadata{newItem(6, "x")}})
	if !errors.Is(err, protocol.ErrWorkspaceNotFound) {
		t.Errorf("CommitAndWait to an unknown workspace: %v", err)
	}
}

func TestReconnectCatchesUp(t *testing.T) {
	e := newEnv(t)
	name := "client-test-" + uuid.NewString()[:8]
	c := e.dial(func(cfg *client.Config) { cfg.Name = name })
	ctx := ctxT(t)
	if _, err := c.UpdateDevice(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var col collector
	e.subscribe(c, &col, client.SubscribeOptions{})
	// A commit whose notification the device never gets (it is lost with the
	// connection): the catch-up after the reconnect delivers it.
	commitVia(t, e, c, "one", 1)
	testenv.Eventually(t, 30*time.Second, func() error {
		n, err := rpctest.CloseConnections(testenv.ManagementURL(), e.url, name)
		if err == nil && n == 0 {
			err = errors.New("client connection not listed yet")
		}
		return err
	})
	ups := col.waitFor(t, 1)
	if u := ups[0]; u.ToVersion != 1 || len(u.Items) != 1 {
		t.Fatalf("catch-up after reconnect = %+v", u)
	}
	if _, err := c.GetWorkspaces(ctx); err != nil {
		t.Errorf("call after reconnect: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := e.svc.CountCalls("ChangesSince", ""); n < 2 {
			return fmt.Errorf("%d getChangesSince calls: no catch-up after the reconnect", n)
		}
		return nil
	})
	if ups := col.snapshot(); len(ups) != 1 {
		t.Errorf("updates after reconnect: %+v", ups)
	}
}

// BenchmarkCall measures round trips of a small call through the real broker and
// server (with the map-backed service), from parallel goroutines sharing one client.
func BenchmarkCall(b *testing.B) {
	url := testenv.AMQPURL(b)
	svc := rpctest.NewService()
	user := uuid.New()
	svc.AddUser(user, "alice", "alice@example.com")
	rpctest.StartServer(b, rpc.Config{URL: url, Auth: rpc.AuthTrust, Logger: slogDiscard()}, svc)
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{URL: url, UserID: user})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetWorkspaces(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestBusyIsRetriedAndBadLoginFails(t *testing.T) {
	e := newEnv(t)
	var once sync.Once
	e.svc.SetHook(func(ctx context.Context, call rpctest.Call) error {
		var busy error
		if call.Method == "Workspaces" {
			once.Do(func() { busy = &protocol.BusyError{RetryAfter: 20 * time.Millisecond} })
		}
		return busy
	})
	c := e.dial()
	if _, err := c.GetWorkspaces(ctxT(t)); err != nil {
		t.Fatalf("GetWorkspaces after one Busy: %v", err)
	}
	if n := e.svc.CountCalls("Workspaces", ""); n != 2 {
		t.Errorf("Workspaces calls = %d, want 2", n)
	}
	e.svc.SetHook(func(context.Context, rpctest.Call) error { return &protocol.BusyError{RetryAfter: time.Millisecond} })
	_, err := c.GetWorkspaces(ctxT(t))
	var ce *client.Error
	if !errors.Is(err, protocol.ErrBusy) || !errors.As(err, &ce) || ce.RetryAfter != time.Millisecond {
		t.Errorf("always Busy: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.GetWorkspaces(ctxT(t)); !errors.Is(err, client.ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}

	bad := strings.Replace(e.login, e.user.String()+":", e.user.String()+":wrong", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Dial(ctx, client.Config{URL: bad, UserID: e.user}); err == nil || ctx.Err() != nil {
		t.Errorf("Dial with a wrong password: %v (ctx %v)", err, ctx.Err())
	}
}
