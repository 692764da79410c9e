// Package rpc owns the server side of ISyncService over AMQP (PROTOCOL.md §2, §4, §6): it
// consumes the request queue, decodes and checks each request, establishes the caller's
// identity, calls the service, and publishes the reply. On updateDevice it declares and
// binds the device's event queue; on a replayed commit it republishes the original
// notifyCommit. Every delivery is acked exactly once after its work and reply are done
// (acks.go: one multiple ack covers a run of finished deliveries): bad input gets an
// error reply, never a requeue. It keeps the encoded getChanges replies
// of recently read workspaces (changes.go), each served again only at the workspace's
// current stamp, the large ones outside Go's heap (offheap.go: never read or written
// once unmapped: the cache unmaps one when no request holds it, the collector one
// nothing can reach any more).
//
// It must never decide anything itself (that is the service's job), never publish a
// fresh commit's notification (the notifier does, after durability), and never let one
// request's failure or panic stop the consumer.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Service is what the server needs of the application layer.
type Service interface {
	AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (protocol.Account, error) // caller nil = trust mode: any e-mail
	UpdateDevice(ctx context.Context, req protocol.UpdateDeviceRequest) (service.DeviceResult, error)
	Workspaces(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error)
	// ChangesStamp and EncodedAnswer answer getChanges (service.Service documents them).
	ChangesStamp(ctx context.Context, user, ws uuid.UUID) (st service.ChangesStamp, ok bool, err error)
	EncodedAnswer(ctx context.Context, user, ws uuid.UUID, base *changeset.Base, enc service.ItemEncoder) (changeset.Answer, error)
	ChangesSince(ctx context.Context, user, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error)
	ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error)
	Commit(ctx context.Context, req protocol.CommitRequest) (service.CommitResult, error)
	UpdateWorkspace(ctx context.Context, req protocol.UpdateWorkspaceRequest) error
	// Share answers createShareProposal (PROTOCOL.md §8).
	Share(ctx context.Context, req service.ShareRequest) (service.ShareResult, error)
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("rpc: server closed")

// Server serves ISyncService requests from the broker.
type Server struct {
	cfg Config
	svc Service
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	running bool
	cancel  context.CancelFunc
	done    chan struct{}

	consuming atomic.Bool // a session is consuming the request queue

	bytes   *budget.Pool  // MaxInFlightBytes
	users   *userLimiter  // PerUserInFlight
	replays *replayGate   // ReplayWindow
	changes *changesCache // ChangesCacheBytes; nil: none
}

// Consuming reports whether the server is consuming its request queue now (for
// readiness checks): false while it (re)connects to the broker.
func (s *Server) Consuming() bool { return s.consuming.Load() }

// NewServer checks cfg and registers the metrics; Run starts serving.
func NewServer(cfg Config, svc Service) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, errors.New("rpc: a Service is required")
	}
	return &Server{cfg: cfg, svc: svc, log: cfg.Logger.With("component", "rpc"),
		bytes: budget.NewPool(cfg.MaxInFlightBytes), users: newUserLimiter(cfg.PerUserInFlight, cfg.PerUserQueued, cfg.QueuedTotal, cfg.PerUserBytes),
		replays: newReplayGate(cfg.ReplayWindow, cfg.ReplayBytes), changes: newChangesCache(cfg.ChangesCacheBytes)}, nil
}

// Run serves until ctx ends or Close is called, reconnecting after a broker loss and
// re-declaring the RPC topology on every connection. It returns nil after Close,
// ctx.Err() when ctx ends, or the error that made serving impossible.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.running {
		s.mu.Unlock()
		return errors.New("rpc: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.running, s.cancel, s.done = true, cancel, make(chan struct{})
	done := s.done
	s.mu.Unlock()
	defer close(done)
	defer cancel()

	if s.cfg.Auth == AuthTrust {
		s.log.Warn("trust mode: requests without user_id are accepted and the body's userId is believed; use only on a closed network")
	}
	err := broker.Run(ctx, broker.Config{URL: s.cfg.URL, Name: s.cfg.Name, MinBackoff: s.cfg.MinBackoff,
		MaxBackoff: s.cfg.MaxBackoff, Logger: s.cfg.Logger}, s.session)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Close stops consuming, waits (bounded by ShutdownTimeout) for in-flight requests, and
// closes the connection. It is idempotent and safe to call before or without Run.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// session serves on one connection. It returns when ctx ends (graceful: in-flight
// requests finish) or when one of its channels fails; in the latter case it closes the
// connection so that broker.Run starts over.
func (s *Server) session(ctx context.Context, conn *amqp.Connection) error {
	ch, pub, err := s.openChannels(conn)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer ch.Close()
	defer pub.Close()
	tag := s.cfg.Name + "-" + uuid.NewString()
	deliveries, err := ch.Consume(s.cfg.RequestQueue, tag, false, false, false, false, nil)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: consume %s: %w", s.cfg.RequestQueue, err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	sess := &session{conn: conn, pub: pub, acks: newAcks(ch, s.log)}

	// Handlers outlive ctx so that a graceful stop lets them finish; hcancel cuts them
	// off when the drain takes longer than ShutdownTimeout.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	w := newWorkers(s.cfg.Concurrency)
	defer w.stop()
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	s.log.Info("serving requests", "queue", s.cfg.RequestQueue, "concurrency", s.cfg.Concurrency, "auth", s.cfg.Auth.String())

	var failure error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case e := <-chClosed:
			failure = fmt.Errorf("rpc: consumer channel closed: %v", e)
			break loop
		case e := <-pubClosed:
			failure = fmt.Errorf("rpc: reply channel closed: %v", e)
			break loop
		case d, ok := <-deliveries:
			if !ok {
				failure = errors.New("rpc: delivery stream ended")
				break loop
			}
			s.take(ctx, hctx, sess, w, d)
		}
	}
	if !ch.IsClosed() {
		if err := ch.Cancel(tag, false); err != nil {
			s.log.Debug("cancel consumer", "err", err)
		}
	}
	if !waitTimeout(&w.wg, s.cfg.ShutdownTimeout) {
		s.log.Warn("in-flight requests did not finish in time; cancelling them", "timeout", s.cfg.ShutdownTimeout)
		hcancel()
		w.wg.Wait()
	}
	if failure != nil {
		s.log.Warn("session failed; reconnecting", "err", failure)
		_ = conn.Close()
		return failure
	}
	return ctx.Err()
}

// openChannels opens the consumer channel (declaring the RPC topology, with the
// prefetch) and the reply channel (in confirm mode: a reply the broker dropped because
// the channel was closing leaves its request unacked, to be redelivered and answered
// on a new connection).
func (s *Server) openChannels(conn *amqp.Connection) (ch, pub *amqp.Channel, err error) {
	if ch, err = conn.Channel(); err != nil {
		return nil, nil, fmt.Errorf("rpc: open consumer channel: %w", err)
	}
	if err := topology.DeclareRPCQueue(ch, s.cfg.RequestQueue, s.cfg.QueueOptions.Quorum); err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("rpc: declare topology: %w", err)
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("rpc: set prefetch %d: %w", s.cfg.Prefetch, err)
	}
	if pub, err = conn.Channel(); err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("rpc: open reply channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		_ = ch.Close()
		_ = pub.Close()
		return nil, nil, fmt.Errorf("rpc: confirm mode on the reply channel: %w", err)
	}
	return ch, pub, nil
}

// take starts the work of one delivery without ever waiting, so that the loop keeps
// taking (and, beyond the bounds, refusing) deliveries whatever one user does: an
// oversize body is refused before anything reads it (the broker's max_message_size
// caps what the client library buffered); a delivery beyond its user's share or the
// server's bytes is answered Busy; any other is counted against its user here, in
// delivery order, so that a user's requests are handled in the order they arrived.
func (s *Server) take(ctx, hctx context.Context, sess *session, w *workers, d amqp.Delivery) {
	var tr *stages.Trace
	if s.cfg.Stages != nil {
		tr = stages.Start()
	}
	sess.acks.taken(d.DeliveryTag)
	if err := wire.CheckBodySize(len(d.Body)); err != nil {
		w.goRun(func() {
			defer sess.acks.leave(d.DeliveryTag)
			s.refuse(hctx, sess, d, "invalid", err)
		})
		return
	}
	adm, refused := s.users.enter(s.userKey(&d), int64(len(d.Body)))
	var res *budget.Reservation
	if refused == "" {
		var ok bool
		if res, ok = s.bytes.TryAcquire(int64(len(d.Body))); !ok {
			s.users.abandon(adm)
			refused = BusyInFlightBytes
		}
	}
	if refused != "" {
		w.goRun(func() {
			defer sess.acks.leave(d.DeliveryTag)
			s.refuseBusy(hctx, sess, d, refused)
		})
		return
	}
	w.goRun(func() {
		defer sess.acks.leave(d.DeliveryTag) // a delivery not acked by then is redelivered
		defer res.Release()
		s.serve(ctx, stages.With(hctx, tr), sess, d, res, w.sem, adm)
	})
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// session is what handlers use of one connection.
type session struct {
	conn  *amqp.Connection
	acks  *acks // settles the consumer channel's deliveries
	pubMu sync.Mutex
	pub   *amqp.Channel
}

// publishReply publishes on the shared reply channel, calls published (the body is
// written: nothing refers to it any more), and waits for the broker's confirm (outside
// the channel's lock, so replies do not wait on one another's round trips).
func (s *session) publishReply(ctx context.Context, key string, msg amqp.Publishing, published func()) error {
	s.pubMu.Lock()
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", key, false, false, msg)
	s.pubMu.Unlock()
	published()
	if err != nil {
		return err
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for the reply's confirm: %w", err)
	}
	if !acked {
		return errors.New("the broker did not confirm the reply")
	}
	return nil
}

// withChannel runs f on a channel of its own, so that a channel-level error (a 404 or
// 406 from a declaration) does not disturb anything else.
func (s *session) withChannel(f func(ch *amqp.Channel) error) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	return f(ch)
}
