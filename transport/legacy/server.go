package legacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/broker"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Service is what the legacy server needs of the application layer: the methods the
// JSON transport (transport/rpc) calls for the same requests.
type Service interface {
	AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (protocol.Account, error)
	UpdateDevice(ctx context.Context, req protocol.UpdateDeviceRequest) (service.DeviceResult, error)
	Workspaces(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error)
	Changes(ctx context.Context, user, ws uuid.UUID) ([]domain.ItemMetadata, error)
	ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error)
	Commit(ctx context.Context, req protocol.CommitRequest) (service.CommitResult, error)
	UpdateWorkspace(ctx context.Context, req protocol.UpdateWorkspaceRequest) error
	Share(ctx context.Context, req service.ShareRequest) (service.ShareResult, error)
}

// ServerConfig configures a Server. Start from DefaultServerConfig.
type ServerConfig struct {
	// URL is the legacy broker: a vhost of its own, reachable only from the closed
	// network of the legacy clients (identity is by trust). Required.
	URL string
	// Name is the connection name shown by the broker. Default "syncd-legacy".
	Name string
	// Concurrency bounds the requests handled at once; the prefetch is twice it.
	// Default 16.
	Concurrency int
	// PerUserInFlight bounds one user's requests handled or waiting at once (the user
	// is the body's userId, or the e-mail of a getAccountInfo); beyond it a request is
	// refused Busy, so one desktop cannot take every slot. Default 4.
	PerUserInFlight int
	// RequestTimeout is each request's deadline. Default 30s (ObjectMQ's desktop gives
	// up after 3 × 5 s and retries with the same correlation id).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on Close. Default 10s.
	ShutdownTimeout time.Duration
	// MaxReplyBytes bounds a reply's body: a larger result is answered with an
	// exception (ResultTooLarge) instead, so the broker (max_message_size, 128 MiB by
	// default) never refuses it and closes the reply channel. Default 96 MiB.
	MaxReplyBytes int
	// MaxInFlightBytes bounds the bytes of request bodies, answers being read and
	// replies this server holds at once (as transport/rpc's MaxInFlightBytes does for
	// JSON clients, with a pool of its own): a request whose body, or a read whose answer
	// or reply, does not fit is answered Busy, having changed nothing. Default 256 MiB.
	MaxInFlightBytes int64
	// Storage is what getAccountInfo and getWorkspaces tell the desktop about Swift.
	Storage Storage
	// Shares reads which workspaces a share created (the event store), so that those
	// are shown as StackSync showed them, with their folder as root (sharedroot.go).
	// nil serves every workspace as the service lists it (unit tests only).
	Shares shareinfo.Reader
	Logger *slog.Logger
}

// DefaultServerConfig returns the defaults; URL is left to the caller.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{Name: "syncd-legacy", Concurrency: 16, PerUserInFlight: 4, RequestTimeout: 30 * time.Second,
		ShutdownTimeout: 10 * time.Second, MaxReplyBytes: 96 << 20, MaxInFlightBytes: 256 << 20, Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks c; it changes nothing.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.URL == "" || c.Name == "" {
		errs = append(errs, errors.New("URL and Name are required"))
	}
	if c.Concurrency < 1 || c.PerUserInFlight < 1 || c.RequestTimeout <= 0 || c.ShutdownTimeout <= 0 || c.MaxReplyBytes < 1 || c.MaxInFlightBytes < 1 {
		errs = append(errs, errors.New("Concurrency, PerUserInFlight, RequestTimeout, ShutdownTimeout, MaxReplyBytes and MaxInFlightBytes must be positive"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("a Logger is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("legacy server: %w", err)
	}
	return nil
}

// Server serves ISyncService to unmodified StackSync clients on the legacy broker: it
// consumes the ISyncService queue (requests of type java), calls the service, and
// answers synchronous calls on their reply_<name> queue with a Java-serialized
// Response; asynchronous calls (commit) get no reply, as from StackSync. Identity is by
// trust: the request body's userId. Every delivery is acked once its work and reply are
// done; a body it cannot read is answered (if synchronous) with an exception and acked,
// never requeued.
type Server struct {
	cfg       ServerConfig
	svc       Service
	log       *slog.Logger
	consuming atomic.Bool

	bytes *budget.Pool // MaxInFlightBytes

	mu     sync.Mutex
	users  map[string]int // requests in flight per user key
	shares *shareCache    // nil without cfg.Shares
}

// NewServer checks cfg.
func NewServer(cfg ServerConfig, svc Service) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, errors.New("legacy server: a Service is required")
	}
	s := &Server{cfg: cfg, svc: svc, log: cfg.Logger.With("component", "legacy"), users: map[string]int{},
		bytes: budget.NewPool(cfg.MaxInFlightBytes)}
	if cfg.Shares != nil {
		s.shares = &shareCache{store: cfg.Shares, infos: map[uuid.UUID]shareinfo.Info{}}
	}
	return s, nil
}

// Consuming reports whether the server is consuming its request queue now.
func (s *Server) Consuming() bool { return s.consuming.Load() }

// Run serves until ctx ends, reconnecting after a broker loss.
func (s *Server) Run(ctx context.Context) error {
	s.log.Warn("legacy StackSync clients are served by trust: the body's userId is believed; keep the legacy vhost on a closed network")
	return broker.Run(ctx, broker.Config{URL: s.cfg.URL, Name: s.cfg.Name, Logger: s.cfg.Logger}, s.session)
}

// conn is what handlers use of one connection: the reply and event channel.
type conn struct {
	mu  sync.Mutex
	pub *amqp.Channel
}

// publish publishes one message and waits for the broker's confirm.
func (c *conn) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	c.mu.Lock()
	dc, err := c.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !acked {
		return errors.New("the broker nacked the message")
	}
	return nil
}

func (s *Server) session(ctx context.Context, amqpConn *amqp.Connection) error {
	ch, err := amqpConn.Channel()
	if err != nil {
		return fmt.Errorf("legacy: open channel: %w", err)
	}
	defer ch.Close()
	if err := topology.DeclareRPC(ch, topology.RequestQueue); err != nil {
		return fmt.Errorf("legacy: %w", err)
	}
	if err := ch.Qos(2*s.cfg.Concurrency, 0, false); err != nil {
		return fmt.Errorf("legacy: prefetch: %w", err)
	}
	pub, err := amqpConn.Channel()
	if err != nil {
		return fmt.Errorf("legacy: open reply channel: %w", err)
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("legacy: confirm mode: %w", err)
	}
	tag := s.cfg.Name + "-" + uuid.NewString()
	deliveries, err := ch.Consume(topology.RequestQueue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("legacy: consume: %w", err)
	}
	c := &conn{pub: pub}
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	s.log.Info("serving legacy StackSync requests", "queue", topology.RequestQueue)
	var failure error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case d, ok := <-deliveries:
			if !ok {
				failure = errors.New("legacy: delivery stream ended")
				break loop
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.handle(hctx, c, sem, d)
			}()
		}
	}
	_ = ch.Cancel(tag, false)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		hcancel()
		<-done
	}
	if failure != nil {
		_ = amqpConn.Close()
		return failure
	}
	return ctx.Err()
}

// readMethod lists the methods whose replies count against MaxInFlightBytes: reads,
// whose answers can be large and whose refusal changes nothing.
var readMethod = map[string]bool{MethodGetAccountInfo: true, MethodGetWorkspaces: true, MethodGetChanges: true}

// handle serves one delivery: decode, admit (its body's bytes, per user, then a slot),
// dispatch, reply when due, ack.
func (s *Server) handle(base context.Context, c *conn, sem chan struct{}, d amqp.Delivery) {
	ctx, cancel := context.WithTimeout(base, s.cfg.RequestTimeout)
	defer cancel()
	res, held := s.bytes.TryAcquire(int64(len(d.Body)))
	if held {
		defer res.Release()
		ctx = budget.NewContext(ctx, res) // the service's read path grows it as it reads
	}
	call, err := DecodeCall(d.Body)
	method := call.Method
	if err == nil && !held {
		err = &protocol.BusyError{RetryAfter: time.Second}
	}
	if err == nil {
		key := userKey(call)
		if !s.enter(key) {
			err = &protocol.BusyError{RetryAfter: time.Second}
		} else {
			defer s.leave(key)
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				return // stopping: unacked, redelivered
			}
		}
	}
	var result any
	if err == nil {
		result, err = s.dispatch(ctx, c, call)
	}
	if errors.Is(err, budget.ErrExhausted) {
		err = &protocol.BusyError{RetryAfter: time.Second} // a read's answer did not fit
	}
	if base.Err() != nil {
		return // cut off at shutdown: unacked, redelivered (writes are idempotent)
	}
	if err != nil {
		s.logFailure(method, &d, err)
	}
	ack := true
	if !call.Async && d.ReplyTo != "" {
		ack = s.reply(ctx, c, &d, call, result, err)
	}
	if ack {
		if err := d.Ack(false); err != nil {
			s.log.Warn("ack request", "correlation_id", d.CorrelationId, "err", err)
		}
	}
	s.log.Debug("legacy request handled", "method", method, "correlation_id", d.CorrelationId, "acked", ack)
}

func (s *Server) logFailure(method string, d *amqp.Delivery, err error) {
	log := s.log.With("method", method, "correlation_id", d.CorrelationId, "err", err)
	switch wire.CodeOf(err) {
	case wire.CodeInternal:
		log.Error("legacy request failed")
	case wire.CodeUnauthorized:
		log.Warn("legacy request refused: unauthorized")
	default:
		log.Debug("legacy request refused")
	}
}

// userKey is whom a request counts against: its userId, else the e-mail it asks
// about, else one shared bucket.
func userKey(c Call) string {
	if id, ok, err := jsUUID(c); err == nil && ok {
		return id.String()
	}
	if e, ok, err := js.AsString(c.Param.Get("email")); err == nil && ok {
		return "email:" + e
	}
	return "anonymous"
}

func (s *Server) enter(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[key] >= s.cfg.PerUserInFlight {
		return false
	}
	s.users[key]++
	return true
}

func (s *Server) leave(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[key]--; s.users[key] <= 0 {
		delete(s.users, key)
	}
}

// dispatch runs the method; a panic becomes an Internal error.
func (s *Server) dispatch(ctx context.Context, c *conn, call Call) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic while handling a legacy request", "method", call.Method, "panic", r, "stack", string(debug.Stack()))
			result, err = nil, fmt.Errorf("legacy: panic in %s: %v", call.Method, r)
		}
	}()
	switch call.Method {
	case MethodGetAccountInfo:
		r, err := ParseGetAccount(call)
		if err != nil {
			return nil, err
		}
		acct, err := s.svc.AccountInfo(ctx, nil, r.Email) // trust: any e-mail, as StackSync
		if err != nil {
			return nil, err
		}
		return AccountInfo(acct, s.cfg.Storage), nil
	case MethodUpdateDevice:
		r, err := ParseUpdateDevice(call)
		if err != nil {
			return nil, err
		}
		res, err := s.svc.UpdateDevice(ctx, r)
		if err != nil {
			return nil, err
		}
		return DeviceID(res.ID), nil
	case MethodGetWorkspaces:
		r, err := ParseGetWorkspaces(call)
		if err != nil {
			return nil, err
		}
		wss, err := s.svc.Workspaces(ctx, *r.UserID)
		if err != nil {
			return nil, err
		}
		return Workspaces(wss, s.cfg.Storage), nil
	case MethodGetChanges:
		r, err := ParseGetChanges(call)
		if err != nil {
			return nil, err
		}
		items, err := s.changes(ctx, *r.UserID, r.WorkspaceID)
		if err != nil {
			return nil, err
		}
		return Changes(items), nil
	case MethodCommit:
		r, err := ParseCommit(call)
		if err == nil {
			err = s.unroot(ctx, &r)
		}
		if err != nil {
			return nil, err
		}
		// The notification is the Publisher's, after durability (also for a replay:
		// it published, or will publish, the original).
		_, err = s.svc.Commit(ctx, r)
		return nil, err
	case MethodUpdateWorkspace:
		return nil, s.updateWorkspace(ctx, c, call)
	case MethodCreateShareProposal:
		r, err := ParseShareProposal(call)
		if err != nil {
			return nil, err
		}
		// Async, as from StackSync: no reply; the proposals are the Publisher's, after
		// durability (also for a replay: it published, or will publish, them).
		_, err = s.svc.Share(ctx, shareRequest(r))
		return nil, err
	}
	return nil, invalid("unknown method %q", call.Method)
}

// shareRequest maps createShareProposal's ShareProposalRequest to the service's request.
func shareRequest(r ShareProposal) service.ShareRequest {
	out := service.ShareRequest{RequestID: r.RequestID, ItemID: r.ItemID, Emails: r.Emails, IsEncrypted: r.IsEncrypted}
	if r.UserID != nil {
		out.UserID = *r.UserID
	}
	return out
}

// updateWorkspace updates the member's workspace, then (before the void reply, as
// StackSync) tells the user's clients with notifyUpdateWorkspace on multi#<userId>.
func (s *Server) updateWorkspace(ctx context.Context, c *conn, call Call) error {
	r, err := ParseUpdateWorkspace(call)
	if err != nil {
		return err
	}
	if err := s.svc.UpdateWorkspace(ctx, r); err != nil {
		return err
	}
	id := uuid.New()
	body, err := EncodeEvent(id.String(), MethodNotifyUpdateWorkspace, UpdateWorkspaceNotification(r))
	if err == nil {
		c.mu.Lock()
		err = topology.DeclareEventExchange(c.pub, r.UserID)
		c.mu.Unlock()
	}
	if err == nil {
		err = c.publish(ctx, topology.EventExchange(r.UserID), "", eventMessage(r.UserID, id.String(), body))
	}
	if err != nil {
		// The update is done and durable; only the other clients' prompt refresh is lost.
		s.log.Warn("legacy: notifyUpdateWorkspace not published", "user", r.UserID, "workspace", r.WorkspaceID, "err", err)
	}
	return nil
}

// reply answers a synchronous call on its reply_<name> queue and reports whether the
// request may be acked (false only when the reply channel is gone).
func (s *Server) reply(ctx context.Context, c *conn, d *amqp.Delivery, call Call, result any, err error) bool {
	if !strings.HasPrefix(d.ReplyTo, "reply_") {
		// Replies go through the default exchange to any queue: only ObjectMQ reply
		// queues may receive them, never the request queue or a client's other queues.
		s.log.Warn("legacy: reply_to is not an ObjectMQ reply queue; no reply sent", "reply_to", d.ReplyTo)
		return true
	}
	id := call.ID
	if id == "" {
		id = d.CorrelationId
	}
	var body []byte
	if err != nil {
		body, err = EncodeResponse(id, nil, ExceptionOf(call.Method, err))
	} else {
		body, err = encodeResult(id, result)
	}
	if err == nil && len(body) > s.cfg.MaxReplyBytes {
		err = fmt.Errorf("%s: %w: the reply of %d bytes exceeds the limit of %d", call.Method, protocol.ErrResultTooLarge,
			len(body), s.cfg.MaxReplyBytes)
		s.log.Warn("legacy: reply too large; answering with an exception", "method", call.Method, "bytes", len(body))
	} else if err == nil && readMethod[call.Method] {
		// A read's reply counts against the bytes held (no room: Busy, nothing was done).
		// A write's reply is small and its work is done: it is always sent.
		if gerr := budget.Grow(ctx, int64(len(body))); gerr != nil {
			err = fmt.Errorf("%s: reply of %d bytes: %w", call.Method, len(body), &protocol.BusyError{RetryAfter: time.Second})
		}
	} else if err != nil {
		s.log.Error("legacy: encode reply", "method", call.Method, "err", err)
	}
	if err != nil {
		if body, err = EncodeResponse(id, nil, ExceptionOf(call.Method, err)); err != nil {
			return true
		}
	}
	msg := amqp.Publishing{AppId: IDOmq, CorrelationId: d.CorrelationId, Type: TypeResponse, Body: body}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
	defer cancel()
	if err := c.publish(pctx, "", d.ReplyTo, msg); err != nil {
		s.log.Warn("legacy: publish reply", "correlation_id", d.CorrelationId, "reply_to", d.ReplyTo, "err", err)
		return !c.pub.IsClosed()
	}
	return true
}
