package rpc

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Message properties of PROTOCOL.md §2.
const (
	contentType  = "application/json"
	typeResponse = "normalResponse"
	typeRequest  = "gson"
)

// outcome is what handling one request produced.
type outcome struct {
	method string // metrics label: a known method, "unknown" or "invalid"
	id     string // the response id: the envelope's id, else the correlation id
	async  bool
	result any
	err    error
	// published, if set, must be called once the reply is published or given up: the
	// reply is written in a cached answer's buffer, which the next reply reuses.
	published func()
}

// discard gives back the hold out's result has on a cached getChanges answer when no
// reply is rendered from it (an async request, one abandoned at shutdown): otherwise the
// answer, once out of the cache, would never be recycled, and its buffer outside the heap
// would stay mapped until a collection ran its cleanup.
func (out *outcome) discard() {
	if c, ok := out.result.(*changesReply); ok && out.published == nil {
		c.cache.release(c)
	}
}

// done calls out.published, if set, once.
func (out *outcome) done() {
	if out.published != nil {
		out.published()
		out.published = nil
	}
}

// codedError carries an exact wire message for a code's sentinel error.
type codedError struct {
	msg  string
	kind error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.kind }

type handlerFunc func(s *Server, ctx context.Context, sess *session, d *amqp.Delivery, req wire.Request) (any, error)

var handlers = map[string]handlerFunc{
	wire.MethodGetAccountInfo:      (*Server).getAccountInfo,
	wire.MethodUpdateDevice:        (*Server).updateDevice,
	wire.MethodGetWorkspaces:       (*Server).getWorkspaces,
	wire.MethodGetChanges:          (*Server).getChanges,
	wire.MethodGetChangesSince:     (*Server).getChangesSince,
	wire.MethodGetItemVersions:     (*Server).getItemVersions,
	wire.MethodCommit:              (*Server).commit,
	wire.MethodUpdateWorkspace:     (*Server).updateWorkspace,
	wire.MethodCreateShareProposal: (*Server).createShareProposal,
}

// refuseBusy answers a delivery beyond its user's share, or beyond the bytes the
// server holds, Busy at once (reason: BusyUserInFlight or BusyInFlightBytes).
func (s *Server) refuseBusy(hctx context.Context, sess *session, d amqp.Delivery, reason string) {
	s.countBusy(reason)
	s.refuse(hctx, sess, d, "unread", &protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter})
}

// serve handles an admitted delivery whose body bytes res holds: it waits for the
// user's place and then for a request slot, or for the session to stop (then the
// delivery stays unacked, to be redelivered).
func (s *Server) serve(ctx, hctx context.Context, sess *session, d amqp.Delivery, res *budget.Reservation, sem chan struct{},
	adm admission) {
	select {
	case <-adm.ticket:
	case <-ctx.Done():
		s.users.abandon(adm)
		return
	}
	// The user's place is given back as soon as the work is done, before the reply is
	// published: a device that sends its next request the moment it has the answer
	// must find its place free.
	leave := sync.OnceFunc(func() { s.users.leave(adm) })
	defer leave()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-sem }()
	s.handle(budget.NewContext(hctx, res), sess, d, leave)
}

// refuse answers a delivery with err without reading its body (method is the metrics
// label) and acks it.
func (s *Server) refuse(base context.Context, sess *session, d amqp.Delivery, method string, err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(base, s.cfg.RequestTimeout)
	defer cancel()
	out := outcome{method: method, id: d.CorrelationId, err: err}
	code := wire.CodeOf(err)
	s.log.Debug("request refused unread", "code", code, "correlation_id", d.CorrelationId, "user_id", d.UserId,
		"bytes", len(d.Body), "err", err)
	sess.acks.settle(d.DeliveryTag, s.reply(ctx, sess, &d, s.encodeReply(ctx, &out), out.done))
	s.cfg.Metrics.Request(method, code, time.Since(start))
}

// handle serves one delivery: dispatch, then done (the work is over), reply when due,
// ack.
func (s *Server) handle(base context.Context, sess *session, d amqp.Delivery, done func()) {
	start := time.Now()
	tr := stages.Only(base)
	tr.Mark(stages.Started)
	ctx, cancel := context.WithTimeout(base, s.cfg.RequestTimeout)
	defer cancel()
	out := s.dispatch(ctx, sess, &d)
	tr.Mark(stages.Answered)
	done()
	if base.Err() != nil {
		// Cut off by a shutdown that outlasted ShutdownTimeout: neither answer nor ack,
		// so the broker hands the request to another consumer (a write is idempotent
		// by requestId).
		s.log.Warn("request abandoned at shutdown; it will be redelivered", "method", out.method, "correlation_id", d.CorrelationId)
		out.discard()
		s.cfg.Metrics.Request(out.method, "Abandoned", time.Since(start))
		return
	}
	var body []byte
	if out.err != nil || !out.async {
		body = s.encodeReply(ctx, &out) // may turn out into an error (too large, busy)
	} else {
		out.discard()
	}
	code := "OK"
	if out.err != nil {
		code = wire.CodeOf(out.err)
		log := s.log.With("method", out.method, "correlation_id", d.CorrelationId, "user_id", d.UserId, "err", out.err)
		switch code {
		case wire.CodeInternal:
			log.Error("request failed")
		case wire.CodeUnauthorized:
			// Security-relevant: who (the verified user_id), what (the method) and the
			// workspace or device named in the error.
			log.Warn("request refused: unauthorized")
		default:
			log.Debug("request refused", "code", code)
		}
	}
	ack := true
	if body != nil {
		ack = s.reply(ctx, sess, &d, body, out.done)
	}
	out.done()
	sess.acks.settle(d.DeliveryTag, ack)
	s.cfg.Metrics.Request(out.method, code, time.Since(start))
	if tr != nil {
		tr.Mark(stages.Done)
		s.cfg.Stages(out.method, tr)
	}
}

// readOnly lists the methods that change nothing.
var readOnly = map[string]bool{
	wire.MethodGetAccountInfo: true, wire.MethodGetWorkspaces: true, wire.MethodGetChanges: true,
	wire.MethodGetChangesSince: true, wire.MethodGetItemVersions: true,
}

// dispatch decodes the envelope and runs the method's handler; a panic becomes an
// Internal error.
func (s *Server) dispatch(ctx context.Context, sess *session, d *amqp.Delivery) (out outcome) {
	out = outcome{method: "invalid", id: d.CorrelationId}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic while handling a request", "method", out.method, "panic", r, "stack", string(debug.Stack()))
			out.result, out.err = nil, fmt.Errorf("rpc: panic in %s: %v", out.method, r)
		}
	}()
	req, err := wire.ParseRequest(d.Body)
	if err != nil {
		out.err = err
		return out
	}
	if req.ID != "" {
		out.id = req.ID
	}
	out.async = req.Async
	h, ok := handlers[req.Method]
	if !ok {
		out.method = "unknown"
		out.err = &codedError{fmt.Sprintf("unknown method %q", req.Method), protocol.ErrInvalid}
		return out
	}
	out.method = req.Method
	out.result, out.err = h(s, ctx, sess, d, req)
	if errors.Is(out.err, context.DeadlineExceeded) && readOnly[req.Method] {
		// A read that outlived its deadline did nothing: Busy, retry later. (A write's
		// outcome is unknown then; it stays an error, and its retry with the same
		// requestId is safe.)
		s.countBusy(BusyReadDeadline)
		out.err = &protocol.BusyError{RetryAfter: time.Second}
	}
	if errors.Is(out.err, budget.ErrExhausted) {
		// The answer did not fit in MaxInFlightBytes (only reads grow a reservation).
		s.countBusy(BusyInFlightBytes)
		out.err = &protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter}
	}
	return out
}

// replyAllowed keeps replies (which go through the default exchange, to any queue)
// out of queues the caller has no business writing to: never a device event queue (a
// flood there would push real events out, x-overflow=drop-head) nor the request queue;
// with a broker-verified user_id only that user's reply.<userId>.* queues.
func (s *Server) replyAllowed(d *amqp.Delivery) bool {
	q := d.ReplyTo
	if strings.HasPrefix(q, "events.") || q == s.cfg.RequestQueue {
		return false
	}
	if _, err := uuid.Parse(d.UserId); err == nil {
		return strings.HasPrefix(q, "reply."+d.UserId+".")
	}
	// Without a verified identity, broker mode answers nobody: anyone could otherwise
	// drop replies into another user's reply queue. Trust mode serves legacy clients
	// (ObjectMQ's reply_<name> queues) on a closed network.
	return s.cfg.Auth == AuthTrust
}

// encodeReply renders out's response. A reply over MaxReplyBytes becomes a
// ResultTooLarge error, and one the in-flight byte budget has no room for becomes Busy,
// before anything is published; out.err records the substitution.
func (s *Server) encodeReply(ctx context.Context, out *outcome) []byte {
	var e *wire.Error
	if out.err != nil {
		e = wire.ErrorOf(out.err)
	}
	var body []byte
	var err error
	if c, ok := out.result.(*changesReply); ok && e == nil {
		body, out.published = c.body(out.id)
	} else {
		body, err = wire.EncodeResponse(out.id, out.result, e)
	}
	if err != nil {
		s.log.Error("encode reply", "method", out.method, "err", err)
		out.err = err
		body, _ = wire.EncodeResponse(out.id, nil, wire.ErrorOf(err))
	}
	if len(body) > s.cfg.MaxReplyBytes {
		out.result = nil
		out.err = fmt.Errorf("%s: %w: the reply of %d bytes exceeds the limit of %d", out.method,
			protocol.ErrResultTooLarge, len(body), s.cfg.MaxReplyBytes)
		s.log.Warn("reply too large; answering ResultTooLarge", "method", out.method, "bytes", len(body), "limit", s.cfg.MaxReplyBytes)
		body, _ = wire.EncodeResponse(out.id, nil, wire.ErrorOf(out.err))
		out.done()
	}
	// A read's reply counts against the bytes the server holds (no room: Busy, nothing
	// was done). A write's reply is small and its work is done: it is always sent.
	if !readOnly[out.method] {
		return body
	}
	if err := budget.Grow(ctx, int64(len(body))); err != nil {
		s.countBusy(BusyInFlightBytes)
		out.result = nil
		out.err = fmt.Errorf("%s: reply of %d bytes: %w", out.method, len(body),
			&protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter})
		body, _ = wire.EncodeResponse(out.id, nil, wire.ErrorOf(out.err))
		out.done()
	}
	return body
}

// reply publishes a response body to the request's reply_to and calls published once
// the body is written (before the broker's confirm), or given up. It reports whether
// the request may be acked: false only when the reply channel is gone (the reply may be
// lost), so that the request is redelivered and answered on a new connection.
func (s *Server) reply(ctx context.Context, sess *session, d *amqp.Delivery, body []byte, published func()) bool {
	defer published()
	if d.ReplyTo == "" {
		s.log.Debug("request without reply_to; no reply sent", "correlation_id", d.CorrelationId)
		return true
	}
	if !s.replyAllowed(d) {
		s.log.Warn("reply_to is not a reply queue of the caller; no reply sent",
			"correlation_id", d.CorrelationId, "user_id", d.UserId, "reply_to", d.ReplyTo)
		return true
	}
	msg := amqp.Publishing{
		ContentType:   contentType,
		Type:          typeResponse,
		AppId:         wire.IDOmq,
		CorrelationId: d.CorrelationId,
		Timestamp:     time.Now(),
		Body:          body,
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
	defer cancel()
	if err := sess.publishReply(pctx, d.ReplyTo, msg, published); err != nil {
		s.log.Warn("publish reply", "correlation_id", d.CorrelationId, "reply_to", d.ReplyTo, "err", err)
		return !sess.pub.IsClosed()
	}
	return true
}

func unauthorized(format string, args ...any) error {
	return &codedError{fmt.Sprintf(format, args...), protocol.ErrUnauthorized}
}

// identify returns the caller of a request whose body names bodyUser (when hasBody).
// Broker mode: the caller is the AMQP user_id and must equal the body's userId. Trust
// mode: a user_id that is a user id is still checked; otherwise the body is believed,
// and a request without a body userId has no caller (nil).
func (s *Server) identify(d *amqp.Delivery, bodyUser uuid.UUID, hasBody bool) (*uuid.UUID, error) {
	caller, err := uuid.Parse(d.UserId)
	if d.UserId == "" || err != nil {
		if s.cfg.Auth == AuthTrust {
			if !hasBody {
				return nil, nil
			}
			return &bodyUser, nil
		}
		if d.UserId == "" {
			return nil, unauthorized("request without user_id")
		}
		return nil, unauthorized("broker user %q is not a user id", d.UserId)
	}
	if hasBody && bodyUser != caller {
		return nil, unauthorized("userId %s does not match the broker user %s", bodyUser, caller)
	}
	return &caller, nil
}

func (s *Server) getAccountInfo(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseGetAccountInfo(req.Params)
	if err != nil {
		return nil, err
	}
	caller, err := s.identify(d, r.UserID, r.UserID != uuid.Nil)
	if err != nil {
		return nil, err
	}
	if _, perr := uuid.Parse(d.UserId); s.cfg.Auth == AuthTrust && perr != nil {
		caller = nil // trust mode without a broker identity: any e-mail
	}
	acct, err := s.svc.AccountInfo(ctx, caller, r.Email)
	if err != nil {
		return nil, err
	}
	return wire.FromAccount(acct), nil
}

func (s *Server) updateDevice(ctx context.Context, sess *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseUpdateDevice(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	res, err := s.svc.UpdateDevice(ctx, r)
	if err != nil {
		return nil, err
	}
	dev := res.ID
	// The queue exists (and is bound to the user's exchange) before the reply. Its
	// workspace bindings are the binder's: it follows membership and device events in
	// the global order, and the notifier publishes a commit only once the binder has
	// passed it, so a binding taken from a read model that lags a removal can never
	// leak a workspace's events to an ex-member.
	if err := sess.declareDeviceQueue(r.UserID, dev, nil, s.cfg.QueueOptions); err != nil {
		return nil, fmt.Errorf("updateDevice user %s device %s: %w", r.UserID, dev, err)
	}
	// Reply once the binder has applied this registration (the queue is then bound to
	// every workspace of the user), so no commit after the reply can miss the device.
	if err := s.waitPast(ctx, s.cfg.Bound, res.Position); err != nil {
		return nil, fmt.Errorf("updateDevice user %s device %s: %w", r.UserID, dev, err)
	}
	return dev.String(), nil
}

// waitPast waits until progress reports a position at or beyond pos, polling with a
// growing interval, for at most Config.ProgressWait; then it answers Busy (the work is
// done and durable; the device retries with the same requestId). A nil progress means
// there is nothing to wait for.
func (s *Server) waitPast(ctx context.Context, progress func(context.Context) (eventstore.Position, error), pos eventstore.Position) error {
	if progress == nil || pos.IsZero() {
		return nil
	}
	deadline := time.Now().Add(s.cfg.ProgressWait)
	wait := time.Millisecond
	for {
		p, err := progress(ctx)
		if err == nil && !p.Less(pos) {
			return nil
		}
		if time.Now().After(deadline) {
			return &protocol.BusyError{RetryAfter: s.cfg.ProgressWait}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// declareDeviceQueue declares and binds a device's event queue. A queue that exists
// with other arguments (an operator changed the limits) is kept as it is and bound.
func (sess *session) declareDeviceQueue(user, dev uuid.UUID, workspaces []uuid.UUID, opts topology.QueueOptions) error {
	err := sess.withChannel(func(ch *amqp.Channel) error {
		return topology.DeclareDeviceQueue(ch, user, dev, workspaces, opts)
	})
	var ae *amqp.Error
	if err == nil || !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return err
	}
	return sess.withChannel(func(ch *amqp.Channel) error {
		q := topology.DeviceQueue(user, dev)
		if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare queue %s passively: %w", q, err)
		}
		for _, id := range append([]uuid.UUID{user}, workspaces...) {
			if err := topology.Bind(ch, user, dev, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Server) getWorkspaces(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseGetWorkspaces(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	wss, err := s.svc.Workspaces(ctx, r.UserID)
	if err != nil {
		return nil, err
	}
	return wire.FromWorkspaces(wss), nil
}

func (s *Server) getChangesSince(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseGetChangesSince(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	page, err := s.svc.ChangesSince(ctx, r.UserID, r.WorkspaceID, r.SinceVersion, r.Limit)
	if err != nil {
		return nil, err
	}
	return wire.FromChangesPage(page), nil
}

func (s *Server) getItemVersions(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseGetItemVersions(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	items, err := s.svc.ItemVersions(ctx, r.UserID, r.WorkspaceID, r.ItemID)
	if err != nil {
		return nil, err
	}
	return wire.FromItems(items), nil
}

// commit hands the request to the service; a fresh commit's notification is the
// notifier's job, a replayed one's is republished here.
func (s *Server) commit(ctx context.Context, sess *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseCommit(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	stages.Mark(ctx, stages.Parsed)
	res, err := s.svc.Commit(ctx, r)
	if err != nil {
		return nil, err
	}
	// A repeated requestId: publish the original notification again (§5), but never
	// ahead of its first publication by the notifier, which comes in order, after the
	// read models and the bindings caught up. Wait for that (bounded); if it does not
	// come in time, the notifier still owes the notification and will publish it.
	if res.Replayed && s.waitPast(ctx, s.cfg.Published, res.Position) == nil {
		ws, user := res.Event.WorkspaceID, r.UserID.String()
		if s.replays.recent(ws, r.RequestID) { // a device retrying in a loop costs no encoding
			s.log.Debug("replayed commit: notification already republished within the window; nothing published",
				"workspace", ws, "request_id", r.RequestID, "window", s.cfg.ReplayWindow)
			return nil, nil
		}
		body, err := wire.EncodeNotifyCommit(res.EventID.String(), res.Event)
		if err != nil {
			return nil, fmt.Errorf("commit %s: encode the notification of workspace %s version %d: %w",
				r.RequestID, ws, res.Event.WorkspaceVersion, err)
		}
		// At most once per ReplayWindow, and at most ReplayBytes per user in it: a device
		// retrying in a loop must not fill every member's queue with copies (queues are
		// bounded in messages, not bytes).
		if !s.replays.claim(ws, r.RequestID, user, int64(len(body))) {
			s.log.Debug("replayed commit: notification already republished within the window, or the user's replays are over their bytes; nothing published",
				"workspace", ws, "request_id", r.RequestID, "window", s.cfg.ReplayWindow)
			return nil, nil
		}
		if err := sess.republish(ctx, ws, body); err != nil {
			s.replays.release(ws, r.RequestID, user, int64(len(body)))
			return nil, fmt.Errorf("commit %s: republish the notification of workspace %s version %d: %w",
				r.RequestID, ws, res.Event.WorkspaceVersion, err)
		}
	}
	return nil, nil
}

// republish publishes a recorded commit's notifyCommit (body) again to its workspace's
// exchange, persistent, and waits for the broker's confirm.
func (sess *session) republish(ctx context.Context, ws uuid.UUID, body []byte) error {
	return sess.withChannel(func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("confirm mode: %w", err)
		}
		if err := topology.DeclareEventExchange(ch, ws); err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(ws), "", false, false, amqp.Publishing{
			ContentType:   contentType,
			Type:          typeRequest,
			AppId:         ws.String(),
			CorrelationId: uuid.NewString(),
			DeliveryMode:  amqp.Persistent,
			Timestamp:     time.Now(),
			Body:          body,
		})
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("wait for confirm: %w", err)
		}
		if !acked {
			return errors.New("broker nacked the publish")
		}
		return nil
	})
}

func (s *Server) updateWorkspace(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseUpdateWorkspace(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	return nil, s.svc.UpdateWorkspace(ctx, r)
}
