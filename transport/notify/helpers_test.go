package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// env is one test's services: a fresh database holding both the event store and the
// checkpoints, and a fresh vhost.
type env struct {
	dsn   string
	amqp  string
	store eventstore.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	url := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &env{dsn: dsn, amqp: url, store: s}
}

// testLogger routes logs to t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// start runs fn(ctx) in the background until the returned stop is called or the test
// ends; stop waits for fn to return and checks it returned ctx's error.
func start(t testing.TB, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && err != context.Canceled {
					t.Errorf("run returned %v, want context.Canceled", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// mustNotifier builds a notifier of cfg over store; an error fails the test.
func mustNotifier(t testing.TB, cfg Config, store eventstore.Store) *Notifier {
	t.Helper()
	n, err := New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// exchangeChannel dials amqpURL (closed when the test ends) and returns a channel on
// which the exchange of ws is declared, as the server declares it.
func exchangeChannel(t testing.TB, amqpURL string, ws uuid.UUID) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.DeclareEventExchange(ch, ws); err != nil {
		t.Fatal(err)
	}
	return ch
}

func fastConfig(t testing.TB, e *env) Config {
	return Config{
		DSN: e.dsn, AMQPURL: e.amqp,
		PollMin: time.Millisecond, PollMax: 20 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		LeaderRetry: 50 * time.Millisecond, ConfirmTimeout: 5 * time.Second,
		SkipTopologyCheck: true, // no binder runs beside these notifiers
		Logger:            testLogger(t),
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// commit appends a Committed event of ws at workspace version v and returns what was stored.
func commit(t testing.TB, s eventstore.Store, ws uuid.UUID, v int64) (eventstore.Record, domain.Committed) {
	t.Helper()
	id := domain.ItemID(v)
	c := domain.Committed{
		WorkspaceID: ws, WorkspaceVersion: v, RequestID: fmt.Sprintf("req-%d", v),
		UserID: uuid.New(), DeviceID: uuid.New(),
		CommittedAt: time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true,
			Metadata: &domain.ItemMetadata{ID: &id, Version: 1, WorkspaceID: ws, Status: domain.StatusNew, Filename: fmt.Sprintf("f%d", v), Chunks: []string{}}}},
		LimitQuota: 100, UsedQuota: v,
	}
	rec := appendEvent(t, s, domain.WorkspaceStream(ws), c)
	return rec, c
}

// appendEvent appends e to stream and returns the record.
func appendEvent(t testing.TB, s eventstore.Store, stream string, e domain.Event) eventstore.Record {
	t.Helper()
	typ, data, err := domain.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	rec := eventstore.Record{ID: uuid.New(), Type: typ, Data: data}
	if _, err := s.Append(ctxT(t), stream, eventstore.Any(), rec); err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return rec
}

// positionOf returns the global position of the event id, waiting until it is visible.
func positionOf(t testing.TB, s eventstore.Store, id uuid.UUID) eventstore.Position {
	t.Helper()
	var pos eventstore.Position
	testenv.Eventually(t, 20*time.Second, func() error {
		from := eventstore.Start
		for {
			evs, err := s.ReadAll(ctxT(t), from, 1000)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				return fmt.Errorf("event %s not visible yet", id)
			}
			for _, ev := range evs {
				if ev.ID == id {
					pos = ev.Position
					return nil
				}
			}
			from = evs[len(evs)-1].Position
		}
	})
	return pos
}

// listener collects the messages delivered to a queue bound to an exchange.
type listener struct {
	mu   sync.Mutex
	msgs []amqp.Delivery
}

// listen declares an exclusive queue bound to the fan-out exchange of ws (declaring the
// exchange as the server does) and collects its messages until the test ends.
func listen(t testing.TB, amqpURL string, ws uuid.UUID) *listener {
	t.Helper()
	ch := exchangeChannel(t, amqpURL, ws)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", topology.EventExchange(ws), false, nil); err != nil {
		t.Fatal(err)
	}
	dels, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{}
	go func() {
		for d := range dels {
			l.mu.Lock()
			l.msgs = append(l.msgs, d)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *listener) all() []amqp.Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]amqp.Delivery(nil), l.msgs...)
}

// versions decodes the workspaceVersion of every message, in arrival order.
func (l *listener) versions(t testing.TB) []int64 {
	t.Helper()
	var out []int64
	for _, d := range l.all() {
		var ev struct {
			Params []struct {
				WorkspaceVersion int64 `json:"workspaceVersion"`
			} `json:"params"`
		}
		if err := json.Unmarshal(d.Body, &ev); err != nil || len(ev.Params) != 1 {
			t.Fatalf("undecodable event %q: %v", d.Body, err)
		}
		out = append(out, ev.Params[0].WorkspaceVersion)
	}
	return out
}

// dedup keeps the first arrival of each version and reports whether those first
// arrivals came in increasing order.
func dedup(vs []int64) (firsts []int64, ordered bool) {
	seen := map[int64]bool{}
	ordered = true
	for _, v := range vs {
		if seen[v] {
			continue
		}
		seen[v] = true
		if len(firsts) > 0 && v < firsts[len(firsts)-1] {
			ordered = false
		}
		firsts = append(firsts, v)
	}
	return firsts, ordered
}

// waitVersions waits until the listener has seen every version 1..n at least once, and
// checks that first arrivals are in order.
func waitVersions(t testing.TB, l *listener, n int64, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		firsts, ordered := dedup(l.versions(t))
		if !ordered {
			t.Fatalf("versions out of order: %v", l.versions(t))
		}
		if int64(len(firsts)) != n {
			return fmt.Errorf("have %d distinct versions of %d", len(firsts), n)
		}
		for i, v := range firsts {
			if v != int64(i+1) {
				t.Fatalf("version %d at place %d (arrivals %v)", v, i, l.versions(t))
			}
		}
		return nil
	})
}

// mgmt calls the RabbitMQ management API and decodes a JSON answer into out (if not nil).
func mgmt(method, path string, out any) error { return mgmtBody(method, path, "", out) }

// mgmtBody is mgmt with a JSON request body.
func mgmtBody(method, path, body string, out any) error {
	return testenv.Management(method, path, body, out)
}

// killConnections closes the connections of the vhost of amqpURL whose client-given
// name is name, through the management API, and returns how many it closed.
func killConnections(t testing.TB, amqpURL, name string) int {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	var conns []struct {
		Name             string `json:"name"`
		ClientProperties struct {
			ConnectionName string `json:"connection_name"`
		} `json:"client_properties"`
	}
	if err := mgmt(http.MethodGet, "/api/vhosts/"+url.PathEscape(vhost)+"/connections", &conns); err != nil {
		t.Fatalf("list connections: %v", err)
	}
	n := 0
	for _, c := range conns {
		if c.ClientProperties.ConnectionName != name {
			continue
		}
		if err := mgmt(http.MethodDelete, "/api/connections/"+url.PathEscape(c.Name), nil); err != nil {
			t.Logf("close connection %s: %v", c.Name, err)
			continue
		}
		n++
	}
	return n
}

// setConfigurePermission sets the test user's configure permission on the vhost of
// amqpURL (write and read stay ".*").
func setConfigurePermission(t testing.TB, amqpURL, configure string) {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	body, _ := json.Marshal(map[string]string{"configure": configure, "write": ".*", "read": ".*"})
	path := "/api/permissions/" + url.PathEscape(vhost) + "/" + url.PathEscape(testenv.AMQPUser())
	if err := mgmtBody(http.MethodPut, path, string(body), nil); err != nil {
		t.Fatalf("set permissions: %v", err)
	}
}

// killDatabaseSessions terminates every other session on the test's database, as a
// PostgreSQL restart would.
func killDatabaseSessions(t testing.TB, dsn string) int {
	t.Helper()
	c, err := pgx.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	err = c.QueryRow(ctxT(t), `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()) t`).Scan(&n)
	if err != nil {
		t.Fatalf("terminate sessions: %v", err)
	}
	return n
}
