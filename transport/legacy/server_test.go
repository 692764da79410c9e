package legacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// fakeService answers the server tests: the real service is exercised end to end in
// tests/legacy_test.go; here the transport's own rules are under test.
type fakeService struct {
	items   []domain.ItemMetadata
	block   chan struct{} // Changes waits on it when set
	entered chan struct{}
	mu      sync.Mutex
	commits int
	shares  []service.ShareRequest
}

func (f *fakeService) AccountInfo(context.Context, *uuid.UUID, string) (protocol.Account, error) {
	panic("boom")
}
func (f *fakeService) UpdateDevice(context.Context, protocol.UpdateDeviceRequest) (service.DeviceResult, error) {
	return service.DeviceResult{ID: uuid.New()}, nil
}
func (f *fakeService) Workspaces(context.Context, uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	return nil, protocol.ErrNoWorkspaces
}
func (f *fakeService) Changes(ctx context.Context, _, _ uuid.UUID) ([]domain.ItemMetadata, error) {
	if f.block != nil {
		select {
		case f.entered <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.items, nil
}
func (f *fakeService) ItemVersions(context.Context, uuid.UUID, uuid.UUID, domain.ItemID) ([]domain.ItemMetadata, error) {
	return nil, nil
}
func (f *fakeService) Commit(context.Context, protocol.CommitRequest) (service.CommitResult, error) {
	f.mu.Lock()
	f.commits++
	f.mu.Unlock()
	return service.CommitResult{}, nil
}
func (f *fakeService) UpdateWorkspace(context.Context, protocol.UpdateWorkspaceRequest) error {
	return nil
}
func (f *fakeService) Share(_ context.Context, r service.ShareRequest) (service.ShareResult, error) {
	f.mu.Lock()
	f.shares = append(f.shares, r)
	f.mu.Unlock()
	return service.ShareResult{}, nil
}

// logWatch is a slog handler that reports messages containing a text.
type logWatch struct {
	mu   sync.Mutex
	seen []string
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value); return true })
	w.mu.Lock()
	w.seen = append(w.seen, sb.String())
	w.mu.Unlock()
	return nil
}
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *logWatch) WithGroup(string) slog.Handler      { return w }

func (w *logWatch) wait(t *testing.T, parts ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
	next:
		for _, l := range w.seen {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue next
				}
			}
			return nil
		}
		return fmt.Errorf("no log line with %q", parts)
	})
}

type serverEnv struct {
	ch   *amqp.Channel
	logs *logWatch
	svc  *fakeService
}

func startServer(t *testing.T, set func(c *ServerConfig), svc *fakeService) *serverEnv {
	t.Helper()
	cfg := DefaultServerConfig()
	if set != nil {
		set(&cfg)
	}
	cfg.URL = testenv.AMQPURL(t)
	e := &serverEnv{logs: &logWatch{}, svc: svc}
	cfg.Logger = slog.New(e.logs)
	s, err := NewServer(cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if !s.Consuming() {
			return errors.New("not consuming yet")
		}
		return nil
	})
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if e.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	return e
}

// queue declares a queue the test reads by hand.
func (e *serverEnv) queue(t *testing.T, name string) {
	t.Helper()
	if _, err := e.ch.QueueDeclare(name, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

func (e *serverEnv) send(t *testing.T, corr, replyTo, method string, async bool, param *js.Object) {
	t.Helper()
	body, err := js.Encode(js.New(js.ClassOmqRequest, map[string]js.Value{"async": async, "id": js.Str(corr),
		"method": js.Str(method), "params": js.NewObjectArray(param)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ch.Publish(topology.RPCExchange, topology.RequestQueue, false, false,
		amqp.Publishing{CorrelationId: corr, ReplyTo: replyTo, Type: TypeJava, Body: body}); err != nil {
		t.Fatal(err)
	}
}

// reply takes the next message of queue q (polling) and returns its exception.
func (e *serverEnv) reply(t *testing.T, q string) (js.Value, *Exception) {
	t.Helper()
	var d amqp.Delivery
	testenv.Eventually(t, 30*time.Second, func() error {
		m, ok, err := e.ch.Get(q, true)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("no reply yet")
		}
		d = m
		return nil
	})
	v, err := js.Decode(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := v.(*js.Object)
	if r.Get("error") == nil {
		return r.Get("result"), nil
	}
	exc := r.Get("error").(*js.Object)
	typ, _, _ := js.AsString(exc.Get("type"))
	msg, _, _ := js.AsString(exc.Get("message"))
	return nil, &Exception{Type: typ, Message: msg}
}

func (e *serverEnv) depth(t *testing.T, q string) int {
	t.Helper()
	info, err := e.ch.QueueDeclarePassive(q, false, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

func changesReq(user uuid.UUID) *js.Object {
	return js.New(js.ClassGetChangesRequest, map[string]js.Value{"requestId": js.Str("r"), "userId": js.NewUUID(user),
		"workspaceId": js.NewUUID(uuid.New())})
}

// Replies go only to ObjectMQ reply queues (reply_*), never elsewhere; an async call
// gets none; a panic in the service is an Internal exception and serving goes on; a
// reply over MaxReplyBytes becomes a ResultTooLarge exception.
func TestServerReplies(t *testing.T) {
	big := namedItems(50)
	e := startServer(t, func(c *ServerConfig) { c.MaxReplyBytes = 4000 }, &fakeService{items: big})
	user := uuid.New()
	e.queue(t, "evil_q")
	e.queue(t, "reply_a")

	e.send(t, "to-evil", "evil_q", MethodUpdateDevice, false, js.New(js.ClassUpdateDeviceRequest, map[string]js.Value{
		"requestId": js.Str("r"), "userId": js.NewUUID(user), "deviceName": js.Str("d"), "os": js.Str("o")}))
	e.logs.wait(t, "legacy request handled", "correlation_id=to-evil")
	if n := e.depth(t, "evil_q"); n != 0 {
		t.Errorf("a reply went to a queue that is not a reply queue (%d messages)", n)
	}

	e.send(t, "async", "reply_a", MethodCommit, true, js.New(js.ClassCommitRequest, map[string]js.Value{
		"requestId": js.Str("r"), "userId": js.NewUUID(user), "workspaceId": js.NewUUID(uuid.New()), "deviceId": js.NewUUID(uuid.New()),
		"items": js.NewArrayList([]js.Value{js.New(js.ClassItemMetadata, map[string]js.Value{"version": js.NewLong(1),
			"status": js.Str("NEW"), "modifiedAt": js.NewDate(1), "isFolder": js.NewBoolean(true), "filename": js.Str("f")})})}))
	e.logs.wait(t, "legacy request handled", "correlation_id=async")
	if n := e.depth(t, "reply_a"); n != 0 || e.svc.commitCount() != 1 {
		t.Errorf("async commit: %d replies, %d commits", n, e.svc.commitCount())
	}

	// createShareProposal (golden 28, async, reply_to set as the desktop sets it) goes to
	// the service with the request's fields, and gets no reply.
	if err := e.ch.Publish(topology.RPCExchange, topology.RequestQueue, false, false, amqp.Publishing{CorrelationId: "share",
		ReplyTo: "reply_a", Type: TypeJava, Body: golden(t, "28-req-createShareProposal.bin")}); err != nil {
		t.Fatal(err)
	}
	e.logs.wait(t, "legacy request handled", "correlation_id=share")
	want := service.ShareRequest{RequestID: "b1523c26-94f1-4007-b608-748f70d36e41", UserID: wire1, ItemID: folderID,
		Emails: []string{"wire2@example.org"}}
	e.svc.mu.Lock()
	shares := e.svc.shares
	e.svc.mu.Unlock()
	if n := e.depth(t, "reply_a"); n != 0 || len(shares) != 1 || !reflect.DeepEqual(shares[0], want) {
		t.Errorf("createShareProposal: %d replies, service got %+v", n, shares)
	}

	e.send(t, "panic", "reply_a", MethodGetAccountInfo, false, js.New(js.ClassGetAccountRequest, map[string]js.Value{
		"requestId": js.Str("r"), "email": js.Str("a@b")}))
	if _, exc := e.reply(t, "reply_a"); exc == nil || exc.Type != ExcRuntime || exc.Message != "Internal: internal error" {
		t.Errorf("panic answered %+v", exc)
	}

	e.send(t, "big", "reply_a", MethodGetChanges, false, changesReq(user))
	if _, exc := e.reply(t, "reply_a"); exc == nil || !strings.HasPrefix(exc.Message, "ResultTooLarge") {
		t.Errorf("oversized reply answered %+v", exc)
	}
	e.send(t, "ws", "reply_a", MethodGetWorkspaces, false, js.New(js.ClassGetWorkspacesRequest, map[string]js.Value{
		"requestId": js.Str("r"), "userId": js.NewUUID(user)}))
	if _, exc := e.reply(t, "reply_a"); exc == nil || exc.Type != ExcNoWorkspacesFound {
		t.Errorf("getWorkspaces answered %+v", exc)
	}
}

// A user beyond PerUserInFlight is answered Busy at once; another user is served.
func TestServerPerUserBusy(t *testing.T) {
	svc := &fakeService{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	e := startServer(t, func(c *ServerConfig) { c.PerUserInFlight = 1 }, svc)
	e.queue(t, "reply_a")
	a := uuid.New()
	e.send(t, "first", "reply_a", MethodGetChanges, false, changesReq(a))
	<-svc.entered // a's first request holds its only place
	e.send(t, "second", "reply_a", MethodGetChanges, false, changesReq(a))
	if _, exc := e.reply(t, "reply_a"); exc == nil || !strings.HasPrefix(exc.Message, "Busy") {
		t.Fatalf("second request of a answered %+v", exc)
	}
	close(svc.block)
	if res, exc := e.reply(t, "reply_a"); exc != nil || res == nil {
		t.Fatalf("first request answered %+v", exc)
	}
}

func (f *fakeService) commitCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commits
}

// MaxInFlightBytes bounds what the server holds: a request whose body does not fit is
// answered Busy (an async one silently) and reaches no service, and a read whose reply
// does not fit is answered Busy instead of its result.
func TestServerInFlightBytes(t *testing.T) {
	big := namedItems(50)
	e := startServer(t, func(c *ServerConfig) { c.MaxInFlightBytes = 3000 }, &fakeService{items: big})
	user := uuid.New()
	e.queue(t, "reply_a")

	e.send(t, "big-reply", "reply_a", MethodGetChanges, false, changesReq(user))
	if res, exc := e.reply(t, "reply_a"); exc == nil || !strings.HasPrefix(exc.Message, "Busy") {
		t.Errorf("a getChanges whose reply exceeds MaxInFlightBytes answered %v, %+v; want Busy", res, exc)
	}

	items := make([]js.Value, 40)
	for i := range items {
		items[i] = js.New(js.ClassItemMetadata, map[string]js.Value{"version": js.NewLong(1), "status": js.Str("NEW"),
			"modifiedAt": js.NewDate(1), "isFolder": js.NewBoolean(true), "filename": js.Str(strings.Repeat("f", 100))})
	}
	e.send(t, "big-commit", "reply_a", MethodCommit, true, js.New(js.ClassCommitRequest, map[string]js.Value{
		"requestId": js.Str("r"), "userId": js.NewUUID(user), "workspaceId": js.NewUUID(uuid.New()), "deviceId": js.NewUUID(uuid.New()),
		"items": js.NewArrayList(items)}))
	e.logs.wait(t, "legacy request handled", "correlation_id=big-commit")
	if n := e.svc.commitCount(); n != 0 {
		t.Errorf("a commit whose body exceeds MaxInFlightBytes reached the service (%d commits)", n)
	}

	// What fits is served as before: a read whose reply is an exception, a small commit.
	e.send(t, "ws", "reply_a", MethodGetWorkspaces, false, js.New(js.ClassGetWorkspacesRequest, map[string]js.Value{
		"requestId": js.Str("r"), "userId": js.NewUUID(user)}))
	if _, exc := e.reply(t, "reply_a"); exc == nil || exc.Type != ExcNoWorkspacesFound {
		t.Errorf("getWorkspaces answered %+v", exc)
	}
	e.send(t, "small-commit", "reply_a", MethodCommit, true, js.New(js.ClassCommitRequest, map[string]js.Value{
		"requestId": js.Str("r2"), "userId": js.NewUUID(user), "workspaceId": js.NewUUID(uuid.New()), "deviceId": js.NewUUID(uuid.New()),
		"items": js.NewArrayList(items[:1])}))
	e.logs.wait(t, "legacy request handled", "correlation_id=small-commit")
	if n := e.svc.commitCount(); n != 1 {
		t.Errorf("a commit within MaxInFlightBytes: %d commits, want 1", n)
	}
}

// namedItems are n item versions with 100-byte names: replies of a few kilobytes.
func namedItems(n int) []domain.ItemMetadata {
	items := make([]domain.ItemMetadata, n)
	for i := range items {
		id := domain.ItemID(i + 1)
		items[i] = domain.ItemMetadata{ID: &id, Version: 1, Filename: strings.Repeat("n", 100), Status: domain.StatusNew}
	}
	return items
}
