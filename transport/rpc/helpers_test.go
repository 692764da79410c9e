package rpc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// idle keep-alive connections of the management API's HTTP client
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// env is one test's broker vhost, service and server.
type env struct {
	t    *testing.T
	url  string // guest on the test's vhost
	svc  *rpctest.Service
	srv  *rpc.Server
	name string // the server's connection name
	mets *countMetrics
	user uuid.UUID
	ws   uuid.UUID // user's personal workspace
}

func newEnv(t *testing.T, auth rpc.AuthMode, tweak ...func(*rpc.Config)) *env {
	t.Helper()
	e := &env{t: t, url: testenv.AMQPURL(t), svc: rpctest.NewService(), mets: &countMetrics{n: map[string]int{}}}
	e.user = uuid.New()
	e.ws = e.svc.AddUser(e.user, "alice", "alice@example.com")
	e.name = "rpc-test-" + uuid.NewString()[:8]
	// No per-user bound unless a test sets one: most tests send a burst as one user.
	cfg := rpc.Config{URL: e.url, Name: e.name, Auth: auth, Metrics: e.mets, RequestTimeout: 5 * time.Second, Concurrency: 4,
		PerUserInFlight: -1}
	for _, f := range tweak {
		f(&cfg)
	}
	e.srv = rpctest.StartServer(t, cfg, e.svc)
	return e
}

// userURL returns an AMQP URL that logs in as the broker account of user.
func (e *env) userURL(user uuid.UUID) string {
	return rpctest.BrokerUser(e.t, testenv.ManagementURL(), e.url, user)
}

type countMetrics struct {
	mu sync.Mutex
	n  map[string]int // "method/code"
}

func (m *countMetrics) Request(method, code string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n[method+"/"+code]++
}

// Busy implements rpc.BusyMetrics: "busy/<reason>".
func (m *countMetrics) Busy(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n["busy/"+reason]++
}

func (m *countMetrics) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprint(m.n)
}

func (m *countMetrics) count(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[key]
}

// raw is a device speaking the protocol by hand.
type raw struct {
	t       *testing.T
	conn    *amqp.Connection
	ch      *amqp.Channel
	replyQ  string
	userID  string // AMQP user_id property to set, "" for none
	mu      sync.Mutex
	replies <-chan amqp.Delivery
	stash   map[string]amqp.Delivery
}

// dialRaw connects to url; the reply queue is named for user; userIDProp is sent as
// the AMQP user_id ("" = none).
func dialRaw(t *testing.T, url string, user uuid.UUID, userIDProp string) *raw {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	q := "reply." + user.String() + "." + uuid.NewString()[:8]
	if _, err := ch.QueueDeclare(q, false, true, true, false, nil); err != nil {
		t.Fatalf("declare %s: %v", q, err)
	}
	replies, err := ch.Consume(q, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", q, err)
	}
	return &raw{t: t, conn: conn, ch: ch, replyQ: q, userID: userIDProp, replies: replies, stash: map[string]amqp.Delivery{}}
}

// send publishes body as a request with correlation id corr; mutate adjusts the
// properties.
func (r *raw) send(body []byte, corr string, mutate func(*amqp.Publishing)) {
	r.t.Helper()
	p := amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: "ISyncService",
		CorrelationId: corr, ReplyTo: r.replyQ, UserId: r.userID, Body: body}
	if mutate != nil {
		mutate(&p)
	}
	if err := r.ch.PublishWithContext(context.Background(), topology.RPCExchange, topology.RequestQueue, false, false, p); err != nil {
		r.t.Fatalf("publish: %v", err)
	}
}

// await returns the reply with correlation id corr.
func (r *raw) await(corr string) amqp.Delivery {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.stash[corr]; ok {
		delete(r.stash, corr)
		return d
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d, ok := <-r.replies:
			if !ok {
				r.t.Fatalf("reply queue closed while waiting for %s", corr)
			}
			if d.CorrelationId == corr {
				return d
			}
			r.stash[d.CorrelationId] = d
		case <-timeout:
			r.t.Fatalf("no reply to %s within 10s", corr)
		}
	}
}

type response struct {
	Result json.RawMessage `json:"result"`
	Error  *wire.Error     `json:"error"`
	ID     string          `json:"id"`
	IDOmq  string          `json:"idOmq"`
	keys   map[string]json.RawMessage
}

func decodeResponse(t *testing.T, d amqp.Delivery) response {
	t.Helper()
	var resp response
	if err := json.Unmarshal(d.Body, &resp); err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, d.Body)
	}
	if err := json.Unmarshal(d.Body, &resp.keys); err != nil {
		t.Fatalf("reply is not an object: %s", d.Body)
	}
	return resp
}

// request renders a request envelope.
func request(method string, params any, async bool, id string) []byte {
	b, err := json.Marshal(map[string]any{"method": method, "params": []any{params}, "id": id, "async": async})
	if err != nil {
		panic(err)
	}
	return b
}

// call sends a request and returns its decoded reply.
func (r *raw) call(method string, params any) (amqp.Delivery, response) {
	r.t.Helper()
	corr := uuid.NewString()
	r.send(request(method, params, false, corr), corr, nil)
	d := r.await(corr)
	return d, decodeResponse(r.t, d)
}

// ok calls and requires success, decoding the result into out (may be nil).
func (r *raw) ok(method string, params any, out any) response {
	r.t.Helper()
	_, resp := r.call(method, params)
	if resp.Error != nil {
		r.t.Fatalf("%s: error %s: %s", method, resp.Error.Type, resp.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			r.t.Fatalf("%s: result %s: %v", method, resp.Result, err)
		}
	}
	return resp
}

// fails calls and requires the error code.
func (r *raw) fails(method string, params any, code string) response {
	r.t.Helper()
	_, resp := r.call(method, params)
	if resp.Error == nil || resp.Error.Type != code {
		r.t.Fatalf("%s(%v): got %+v result %s, want error %s", method, params, resp.Error, resp.Result, code)
	}
	return resp
}

// queueDepth returns the ready messages of q, read on a throwaway channel.
func queueDepth(t *testing.T, url, q string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("inspect %s: %w", q, err)
	}
	return st.Messages, nil
}

// spyQueue declares, on a channel of r's connection, the workspace's exchange and a
// private queue bound to it, which sees what the server publishes there.
func spyQueue(t *testing.T, r *raw, ws uuid.UUID) (*amqp.Channel, amqp.Queue) {
	t.Helper()
	spy, err := r.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.DeclareEventExchange(spy, ws); err != nil {
		t.Fatal(err)
	}
	q, err := spy.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.QueueBind(q.Name, "", topology.EventExchange(ws), false, nil); err != nil {
		t.Fatal(err)
	}
	return spy, q
}
