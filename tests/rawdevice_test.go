package tests

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/rabbitadmin"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// account is a user made with `syncctl user add` on the test's vhost.
type account struct {
	id        uuid.UUID
	workspace uuid.UUID // personal
	password  string
	email     string
}

var (
	reUser = regexp.MustCompile(`(?m)^user\s+(\S+)`)
	reWS   = regexp.MustCompile(`(?m)^workspace\s+(\S+)`)
)

// vhostOf returns the vhost of an AMQP URL.
func vhostOf(t *testing.T, amqpURL string) string {
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func addUser(t *testing.T, s services, name string, extra ...string) account {
	t.Helper()
	pw := "pw-" + uuid.NewString()
	email := strings.ToLower(name) + "@example.com"
	out := syncctl(t, s, append([]string{"user", "add", "--name", name, "--email", email, "--password", pw,
		"--rabbitmq-api", testenv.ManagementURL(), "--vhost", vhostOf(t, s.amqp)}, extra...)...)
	m, w := reUser.FindStringSubmatch(out), reWS.FindStringSubmatch(out)
	if m == nil || w == nil {
		t.Fatalf("user add printed:\n%s", out)
	}
	a := account{id: uuid.MustParse(m[1]), workspace: uuid.MustParse(w[1]), password: pw, email: email}
	t.Cleanup(func() {
		// Broker users are global; remove the test's.
		if admin, err := rabbitadmin.New(testenv.ManagementURL(), "/"); err == nil {
			_ = admin.DeleteUser(context.Background(), a.id)
		}
	})
	return a
}

// userURL is the AMQP URL of a user's own login on the test's vhost.
func userURL(t *testing.T, s services, a account) string {
	u, err := url.Parse(s.amqp)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(a.id.String(), a.password)
	return u.String()
}

// rawDevice speaks the protocol with plain AMQP, so tests control every property.
type rawDevice struct {
	t       *testing.T
	user    uuid.UUID
	conn    *amqp.Connection
	ch      *amqp.Channel
	replyQ  string
	replies <-chan amqp.Delivery
	legacy  bool // sends no user_id (a trust-mode client on a shared account)
	closed  chan *amqp.Error
}

func dialRaw(t *testing.T, amqpURL string, user uuid.UUID) *rawDevice {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := "reply." + user.String() + "." + uuid.NewString()[:8]
	if _, err := ch.QueueDeclare(q, false, true, true, false, nil); err != nil {
		t.Fatalf("declare own reply queue: %v", err)
	}
	replies, err := ch.Consume(q, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	return &rawDevice{t: t, user: user, conn: conn, ch: ch, replyQ: q, replies: replies, closed: closed}
}

// callOpts tune one raw request.
type callOpts struct {
	userID  *string // AMQP user_id; default the device's user
	async   bool
	noReply bool // publish only: an async request answered only on failure
}

// call sends a request and waits for its response (or returns nil after a short wait
// when none is expected).
func (d *rawDevice) call(method string, params any, o callOpts) *wire.Response {
	d.t.Helper()
	corr := uuid.NewString()
	body, err := json.Marshal(map[string]any{"method": method, "params": []any{params}, "id": corr, "async": o.async})
	if err != nil {
		d.t.Fatal(err)
	}
	uid := d.user.String()
	if d.legacy {
		uid = ""
	}
	if o.userID != nil {
		uid = *o.userID
	}
	pub := amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: "ISyncService", CorrelationId: corr,
		ReplyTo: d.replyQ, UserId: uid, Body: body}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.ch.PublishWithContext(ctx, "rpc_global_exchange", "ISyncService", false, false, pub); err != nil {
		d.t.Fatalf("publish %s: %v", method, err)
	}
	if o.noReply {
		return nil
	}
	wait := 20 * time.Second
	timeout := time.After(wait)
	for {
		select {
		case m, ok := <-d.replies:
			if !ok {
				var why *amqp.Error
				select {
				case why = <-d.closed:
				default:
				}
				d.t.Fatalf("%s: reply channel closed: %v", method, why)
			}
			if m.CorrelationId != corr {
				continue
			}
			var r wire.Response
			if err := json.Unmarshal(m.Body, &r); err != nil {
				d.t.Fatalf("%s: reply %s: %v", method, m.Body, err)
			}
			return &r
		case <-timeout:
			d.t.Fatalf("%s: no reply within %v", method, wait)
		}
	}
}

// ok calls and requires success; it returns the raw result.
func (d *rawDevice) ok(method string, params any) json.RawMessage {
	d.t.Helper()
	r := d.call(method, params, callOpts{})
	// Busy did nothing: a device retries after retryAfterMs (PROTOCOL.md §4), for 30 s at
	// most (after a SIGKILL the user's redelivered requests may hold its places a while).
	for deadline := time.Now().Add(30 * time.Second); r.Error != nil && r.Error.Type == wire.CodeBusy && time.Now().Before(deadline); {
		wait := 100 * time.Millisecond
		if ms := r.Error.RetryAfterMs; ms != nil {
			wait = time.Duration(*ms) * time.Millisecond
		}
		<-time.After(wait)
		r = d.call(method, params, callOpts{})
	}
	if r.Error != nil {
		d.t.Fatalf("%s: %s: %s", method, r.Error.Type, r.Error.Message)
	}
	b, _ := json.Marshal(r.Result)
	return b
}

// refused calls and requires the given error code.
func (d *rawDevice) refused(method string, params any, code string, o callOpts) {
	d.t.Helper()
	r := d.call(method, params, o)
	if r == nil || r.Error == nil || r.Error.Type != code {
		d.t.Fatalf("%s: got %+v, want error %s", method, r, code)
	}
}

// register waits until the user's workspaces are readable (an account made by syncctl
// reaches the read models asynchronously), then registers a device.
func (d *rawDevice) register(name string) uuid.UUID {
	d.t.Helper()
	d.waitWorkspaces()
	var id uuid.UUID
	res := d.ok("updateDevice", map[string]any{"requestId": "reg-" + name, "userId": d.user, "deviceName": name, "os": "linux"})
	if err := json.Unmarshal(res, &id); err != nil {
		d.t.Fatalf("updateDevice result %s: %v", res, err)
	}
	return id
}

// brokerRefuses runs op on a fresh channel of conn and requires the broker to close the
// channel with the given AMQP reply code (403 access refused, 406 precondition failed).
func brokerRefuses(t *testing.T, conn *amqp.Connection, code int, what string, op func(ch *amqp.Channel) error) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("%s: open channel: %v", what, err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	err = op(ch)
	var ae *amqp.Error
	if err == nil {
		select {
		case ae = <-closed:
		case <-time.After(5 * time.Second):
		}
	} else if !errors.As(err, &ae) {
		t.Fatalf("%s: %v, want AMQP error %d", what, err, code)
	}
	if ae == nil || ae.Code != code {
		t.Fatalf("%s: broker answered %v, want code %d", what, ae, code)
	}
}

// itemJSON is a new file or folder in wire form.
func itemJSON(tempID int64, name string, folder bool, parent *int64, size int64) map[string]any {
	m := map[string]any{"id": nil, "tempId": tempID, "version": 1, "status": "NEW", "modifiedAt": "2026-01-01T00:00:00.000Z",
		"checksum": 0, "size": size, "isFolder": folder, "filename": name, "mimetype": "application/octet-stream", "chunks": []string{}, "parentId": nil}
	if parent != nil {
		m["parentId"] = *parent
	}
	if folder {
		m["mimetype"] = "inode/directory"
	}
	return m
}

// waitWorkspaces polls getWorkspaces until it succeeds.
func (d *rawDevice) waitWorkspaces() {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := d.call("getWorkspaces", map[string]any{"requestId": "w", "userId": d.user}, callOpts{})
		if r.Error == nil {
			return
		}
		if time.Now().After(deadline) || r.Error.Type != wire.CodeNoWorkspaces {
			d.t.Fatalf("getWorkspaces: %+v", r.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialRawRetry dials until the broker accepts the connection again.
func dialRawRetry(t *testing.T, amqpURL string, user uuid.UUID) *rawDevice {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := amqp.Dial(amqpURL)
		if err == nil {
			conn.Close()
			return dialRaw(t, amqpURL, user)
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker unreachable: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tryCall is call without failing the test on transport errors: it returns the error
// when the publish fails or no reply comes within timeout.
func (d *rawDevice) tryCall(method string, params any, async bool, timeout time.Duration) (*wire.Response, error) {
	corr := uuid.NewString()
	body, err := json.Marshal(map[string]any{"method": method, "params": []any{params}, "id": corr, "async": async})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	uid := d.user.String()
	if d.legacy {
		uid = ""
	}
	pub := amqp.Publishing{ContentType: "application/json", Type: "gson", CorrelationId: corr, ReplyTo: d.replyQ, UserId: uid, Body: body}
	if err := d.ch.PublishWithContext(ctx, "rpc_global_exchange", "ISyncService", false, false, pub); err != nil {
		return nil, err
	}
	for {
		select {
		case m, ok := <-d.replies:
			if !ok {
				return nil, errors.New("reply channel closed")
			}
			if m.CorrelationId != corr {
				continue
			}
			var r wire.Response
			if err := json.Unmarshal(m.Body, &r); err != nil {
				return nil, err
			}
			return &r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
