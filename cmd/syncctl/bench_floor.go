package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// floorEnv is the "trivial responder floor": a responder in this process on a scratch
// vhost of the same broker, so that the devices' client library (which always sends to
// the protocol's request queue) reaches it and not syncd. It answers every commit at
// once with a notifyCommit-shaped event published, persistent, to the caller's event
// queue: no database, no decision. Nothing that does more work per commit through the
// same broker can be faster; the ratio server/floor says how close the server comes.
//
// The plain floor (issue 14's definition) takes requests with auto-ack and publishes
// without publisher confirms: a broker path that guarantees nothing. The guaranteed
// floor gives the broker the work the server's guarantees need (PROTOCOL.md §5): it
// takes requests with manual acks under a prefetch window, publishes every answer with
// a publisher confirm, and acks a request only once its answer is confirmed (a
// persistent message to a durable queue is confirmed after the broker has written it
// to disk). It is the floor for a server that loses nothing.
type floorEnv struct {
	guaranteed bool
	apiURL     string
	vhost      string
	url        string // --amqp's login on the scratch vhost
	conn       *amqp.Connection
	resp       *responder
	done       chan struct{}
}

// startFloor creates the scratch vhost (granting --amqp's login on it) and starts the
// responder there.
func startFloor(ctx context.Context, cfg benchConfig, run string, base *url.URL, guaranteed bool) (*floorEnv, error) {
	f := &floorEnv{guaranteed: guaranteed, apiURL: cfg.rabbitAPI, vhost: "bench-floor-" + run, done: make(chan struct{})}
	if guaranteed {
		f.vhost += "-guaranteed"
	}
	user := "guest"
	if base.User != nil {
		user = base.User.Username()
	}
	if err := management(ctx, f.apiURL, http.MethodPut, "/api/vhosts/"+url.PathEscape(f.vhost), ""); err != nil {
		return nil, fmt.Errorf("floor: create vhost %s: %w", f.vhost, err)
	}
	perm := `{"configure":".*","write":".*","read":".*"}`
	if err := management(ctx, f.apiURL, http.MethodPut, "/api/permissions/"+url.PathEscape(f.vhost)+"/"+url.PathEscape(user), perm); err != nil {
		f.close(ctx)
		return nil, fmt.Errorf("floor: grant %s on %s: %w", user, f.vhost, err)
	}
	u := *base
	u.Path, u.RawPath = "/"+f.vhost, ""
	f.url = u.String()
	conn, err := amqp.Dial(f.url)
	if err != nil {
		f.close(ctx)
		return nil, fmt.Errorf("floor: connect: %w", err)
	}
	if f.resp, err = newResponder(conn, logger(), guaranteed); err != nil {
		_ = conn.Close()
		f.close(ctx)
		return nil, err
	}
	f.conn = conn // close waits for the responder only once it runs
	go func() { defer close(f.done); f.resp.run() }()
	return f, nil
}

// close stops the responder and deletes the scratch vhost with everything in it.
func (f *floorEnv) close(ctx context.Context) {
	if f.conn != nil {
		_ = f.conn.Close()
		<-f.done
	}
	if err := management(ctx, f.apiURL, http.MethodDelete, "/api/vhosts/"+url.PathEscape(f.vhost), ""); err != nil {
		logger().Warn("bench: delete the floor's vhost", "vhost", f.vhost, "err", err)
	}
}

// devices connects users × devicesPerUser devices to the responder (made-up users,
// one made-up workspace each), registered and subscribed like the server's.
func (f *floorEnv) devices(ctx context.Context, users, devicesPerUser int) ([]benchDevice, error) {
	var devs []benchDevice
	for range users {
		user, ws := uuid.New(), uuid.New()
		for range devicesPerUser {
			cl, err := client.Dial(ctx, client.Config{URL: f.url, UserID: user, SharedLogin: true, Timeout: 30 * time.Second, Logger: logger()})
			if err != nil {
				return devs, fmt.Errorf("floor: connect: %w", err)
			}
			devs = append(devs, benchDevice{cl: cl, workspace: ws})
			if _, err := cl.UpdateDevice(ctx, nil); err != nil {
				return devs, fmt.Errorf("floor: register: %w", err)
			}
			if err := cl.Subscribe(client.SubscribeOptions{Handler: func(client.Update) {}}); err != nil {
				return devs, fmt.Errorf("floor: subscribe: %w", err)
			}
		}
	}
	return devs, nil
}

// responder answers the requests of the floor's devices on one channel, one request
// after another (which keeps each device's workspaceVersions in order).
type responder struct {
	ch       *amqp.Channel // consumes requests, publishes replies and events
	decl     *amqp.Channel // declares device queues
	requests <-chan amqp.Delivery
	log      *slog.Logger
	// answered carries each request of a guaranteed responder, in the order taken, to
	// the goroutine that acks it once its answer is confirmed; nil for the plain floor.
	answered chan answered

	mu       sync.Mutex
	changes  json.RawMessage  // the getChanges answer, set before a getchanges floor
	versions map[string]int64 // by device queue and workspace
	nextItem int64
}

// answered is a request taken by a guaranteed responder: its delivery tag and the
// confirm of its answer (nil when it published none).
type answered struct {
	tag     uint64
	confirm *amqp.DeferredConfirmation
}

// Prefetch window and ack batching of the guaranteed floor, as syncd's defaults
// (transport/rpc: twice the handler concurrency; acks.go: at most 8 finished requests
// wait for one multiple ack).
const (
	floorPrefetch = 64
	floorAckBatch = 8
)

func newResponder(conn *amqp.Connection, log *slog.Logger, guaranteed bool) (*responder, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("floor: open channel: %w", err)
	}
	decl, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("floor: open channel: %w", err)
	}
	if err := topology.DeclareRPC(ch, topology.RequestQueue); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	r := &responder{ch: ch, decl: decl, log: log, changes: json.RawMessage("[]"), versions: map[string]int64{}}
	if guaranteed {
		if err := ch.Qos(floorPrefetch, 0, false); err != nil {
			return nil, fmt.Errorf("floor: prefetch: %w", err)
		}
		if err := ch.Confirm(false); err != nil {
			return nil, fmt.Errorf("floor: confirm mode: %w", err)
		}
		r.answered = make(chan answered, floorPrefetch)
	}
	if r.requests, err = ch.Consume(topology.RequestQueue, "bench-floor", !guaranteed, true, false, false, nil); err != nil {
		return nil, fmt.Errorf("floor: consume: %w", err)
	}
	return r, nil
}

// setChanges makes the responder answer getChanges with n items (encoded once here).
func (r *responder) setChanges(ws uuid.UUID, n int) error {
	items := newFiles("floor", 0, n)
	dev := uuid.New()
	for i := range items {
		id := domain.ItemID(i + 1)
		items[i].ID, items[i].TempID, items[i].DeviceID, items[i].WorkspaceID = &id, nil, dev, ws
	}
	b, err := json.Marshal(wire.FromItems(items))
	if err != nil {
		return fmt.Errorf("floor: encode getChanges answer: %w", err)
	}
	r.mu.Lock()
	r.changes = b
	r.mu.Unlock()
	return nil
}

// run answers requests until the connection closes (and, for a guaranteed responder,
// until every request taken is acked or the channel is gone).
func (r *responder) run() {
	acked := make(chan struct{})
	if r.answered != nil {
		go func() { defer close(acked); r.ackConfirmed() }()
	} else {
		close(acked)
	}
	for d := range r.requests {
		confirm, err := r.handle(d)
		if err != nil {
			r.log.Warn("bench floor: request not answered", "err", err)
		}
		if r.answered != nil {
			r.answered <- answered{tag: d.DeliveryTag, confirm: confirm}
		}
	}
	if r.answered != nil {
		close(r.answered)
	}
	<-acked
}

// ackConfirmed acks the guaranteed responder's requests in the order taken, each once
// its answer's confirm has arrived: one multiple ack for the requests confirmed so
// far when no other waits, or after floorAckBatch of them. A request whose answer was
// nacked (or lost with the channel) is acked too: the floor measures the broker's
// work, it does not retry.
func (r *responder) ackConfirmed() {
	var last uint64
	waiting := 0
	for a := range r.answered {
		if a.confirm != nil {
			a.confirm.Wait()
		}
		last = a.tag
		if waiting++; waiting >= floorAckBatch || len(r.answered) == 0 {
			if err := r.ch.Ack(last, true); err != nil {
				r.log.Debug("bench floor: ack", "err", err)
			}
			waiting = 0
		}
	}
}

// publish publishes msg, with a publisher confirm when the channel is in confirm mode
// (the confirm is nil otherwise).
func (r *responder) publish(key string, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	return r.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", key, false, false, msg)
}

// handle answers one request and returns its answer's publisher confirm (nil when it
// published none, or the channel is not in confirm mode).
func (r *responder) handle(d amqp.Delivery) (*amqp.DeferredConfirmation, error) {
	req, err := wire.ParseRequest(d.Body)
	if err != nil {
		return r.reply(d, "", nil, &wire.Error{Type: wire.CodeInvalidRequest, Message: err.Error()})
	}
	switch req.Method {
	case wire.MethodCommit:
		return r.commit(req)
	case wire.MethodUpdateDevice:
		return r.updateDevice(d, req)
	case wire.MethodGetWorkspaces:
		return r.reply(d, req.ID, []wire.Workspace{}, nil)
	case wire.MethodGetChangesSince:
		var p struct {
			SinceVersion int64 `json:"sinceVersion"`
		}
		_ = json.Unmarshal(req.Params, &p)
		return r.reply(d, req.ID, wire.ChangesPage{Items: []wire.ItemMetadata{}, FromVersion: p.SinceVersion,
			ToVersion: p.SinceVersion, WorkspaceVersion: p.SinceVersion}, nil)
	case wire.MethodGetChanges:
		r.mu.Lock()
		changes := r.changes
		r.mu.Unlock()
		return r.replyRaw(d, req.ID, changes)
	default:
		return r.reply(d, req.ID, nil, &wire.Error{Type: wire.CodeInvalidRequest, Message: "the bench floor does not answer " + req.Method})
	}
}

// updateDevice declares the device's event queue (bound to nothing: events are
// published to it directly) and answers a new device id.
func (r *responder) updateDevice(d amqp.Delivery, req wire.Request) (*amqp.DeferredConfirmation, error) {
	var p struct {
		UserID   string  `json:"userId"`
		DeviceID *string `json:"deviceId"`
	}
	if err := json.Unmarshal(req.Params, &p); err != nil {
		return r.reply(d, req.ID, nil, &wire.Error{Type: wire.CodeInvalidRequest, Message: err.Error()})
	}
	user, err := uuid.Parse(p.UserID)
	if err != nil {
		return r.reply(d, req.ID, nil, &wire.Error{Type: wire.CodeInvalidRequest, Message: "userId: " + err.Error()})
	}
	dev := uuid.New()
	if p.DeviceID != nil {
		if dev, err = uuid.Parse(*p.DeviceID); err != nil {
			return r.reply(d, req.ID, nil, &wire.Error{Type: wire.CodeInvalidRequest, Message: "deviceId: " + err.Error()})
		}
	}
	if err := topology.DeclareDeviceQueue(r.decl, user, dev, nil, topology.QueueOptions{}); err != nil {
		return r.reply(d, req.ID, nil, &wire.Error{Type: wire.CodeInternal, Message: err.Error()})
	}
	return r.reply(d, req.ID, dev.String(), nil)
}

// commit publishes the commit's notification to the caller's event queue: every item
// succeeded at version 1, the workspace's next version for that queue.
func (r *responder) commit(req wire.Request) (*amqp.DeferredConfirmation, error) {
	var p struct {
		RequestID   string              `json:"requestId"`
		UserID      string              `json:"userId"`
		WorkspaceID string              `json:"workspaceId"`
		DeviceID    string              `json:"deviceId"`
		Items       []wire.ItemMetadata `json:"items"`
	}
	if err := json.Unmarshal(req.Params, &p); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	user, err1 := uuid.Parse(p.UserID)
	dev, err2 := uuid.Parse(p.DeviceID)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	queue := topology.DeviceQueue(user, dev)
	r.mu.Lock()
	r.versions[queue+"/"+p.WorkspaceID]++
	v := r.versions[queue+"/"+p.WorkspaceID]
	first := r.nextItem + 1
	r.nextItem += int64(len(p.Items))
	r.mu.Unlock()
	n := wire.CommitNotification{RequestID: p.RequestID, Items: make([]wire.CommitInfo, len(p.Items)), WorkspaceID: p.WorkspaceID,
		UserID: p.UserID, DeviceID: p.DeviceID, CommittedAt: wire.FormatTime(time.Now()), WorkspaceVersion: v}
	for i := range p.Items {
		m := p.Items[i]
		id := first + int64(i)
		m.ID, m.TempID, m.DeviceID, m.WorkspaceID = &id, nil, &p.DeviceID, &p.WorkspaceID
		n.Items[i] = wire.CommitInfo{CommittedVersion: 1, CommitSucceed: true, Metadata: &m}
	}
	body, err := json.Marshal(wire.Event{Method: wire.MethodNotifyCommit, Params: []wire.CommitNotification{n}, ID: uuid.NewString(), Async: true})
	if err != nil {
		return nil, fmt.Errorf("commit: encode: %w", err)
	}
	return r.publish(queue, amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
}

// reply answers a call on its reply queue, as the server does.
func (r *responder) reply(d amqp.Delivery, id string, result any, e *wire.Error) (*amqp.DeferredConfirmation, error) {
	if d.ReplyTo == "" {
		return nil, nil
	}
	body, err := wire.EncodeResponse(id, result, e)
	if err != nil {
		return nil, err
	}
	return r.publish(d.ReplyTo, amqp.Publishing{ContentType: "application/json", AppId: wire.IDOmq,
		CorrelationId: d.CorrelationId, Body: body})
}

// replyRaw answers a call with an already encoded result, spliced into the envelope
// (json.Marshal would re-scan it on every call).
func (r *responder) replyRaw(d amqp.Delivery, id string, result json.RawMessage) (*amqp.DeferredConfirmation, error) {
	qid, err := json.Marshal(id)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, len(result)+len(qid)+48)
	body = append(append(append(body, `{"result":`...), result...), `,"id":`...)
	body = append(append(body, qid...), `,"idOmq":"`+wire.IDOmq+`"}`...)
	return r.publish(d.ReplyTo, amqp.Publishing{ContentType: "application/json", AppId: wire.IDOmq,
		CorrelationId: d.CorrelationId, Body: body})
}

// management calls the RabbitMQ management API at apiURL (with its credentials).
func management(ctx context.Context, apiURL, method, path, body string) error {
	base, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || base.Host == "" {
		return fmt.Errorf("--rabbitmq-api %q: not a URL", apiURL)
	}
	user, pass := "", ""
	if base.User != nil {
		user = base.User.Username()
		pass, _ = base.User.Password()
		base.User = nil
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}
