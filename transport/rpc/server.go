// Package rpc owns the server side of ISyncService over AMQP (PROTOCOL.md §2, §4, §6): it
// consumes the request queue, decodes and checks each request, establishes the caller's
// identity, calls the service, and publishes the reply. On updateDevice it declares and
// binds the device's event queue; on a replayed commit it republishes the original
// notifyCommit. Every delivery is acked exactly once after its work and reply are done:
// bad input gets an error reply, never a requeue.
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
	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Service is what the server needs of the application layer.
type Service interface {
	AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (service.Account, error) // caller nil = trust mode: any e-mail
	UpdateDevice(ctx context.Context, req service.UpdateDeviceRequest) (service.DeviceResult, error)
	Workspaces(ctx context.Context, user uuid.UUID) ([]service.WorkspaceInfo, error)
	Changes(ctx context.Context, user, ws uuid.UUID) ([]domain.ItemMetadata, error)
	ChangesSince(ctx context.Context, user, ws uuid.UUID, since int64, limit int) (service.ChangesPage, error)
	ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error)
	Commit(ctx context.Context, req service.CommitRequest) (service.CommitResult, error)
	UpdateWorkspace(ctx context.Context, req service.UpdateWorkspaceRequest) error
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

	bytes   *budget.Pool // MaxInFlightBytes
	users   *userLimiter // PerUserInFlight
	replays *replayGate  // ReplayWindow
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
		replays: newReplayGate(cfg.ReplayWindow, cfg.ReplayBytes)}, nil
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
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rpc: open consumer channel: %w", err)
	}
	defer ch.Close()
	if err := topology.DeclareRPC(ch, s.cfg.RequestQueue); err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: declare topology: %w", err)
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: set prefetch %d: %w", s.cfg.Prefetch, err)
	}
	pub, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: open reply channel: %w", err)
	}
	defer pub.Close()
	// Replies are confirmed: one the broker dropped because the channel was closing
	// leaves its request unacked, to be redelivered and answered on a new connection.
	if err := pub.Confirm(false); err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: confirm mode on the reply channel: %w", err)
	}
	tag := s.cfg.Name + "-" + uuid.NewString()
	deliveries, err := ch.Consume(s.cfg.RequestQueue, tag, false, false, false, false, nil)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("rpc: consume %s: %w", s.cfg.RequestQueue, err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	sess := &session{conn: conn, pub: pub}

	// Handlers outlive ctx so that a graceful stop lets them finish; hcancel cuts them
	// off when the drain takes longer than ShutdownTimeout.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
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
			if err := wire.CheckBodySize(len(d.Body)); err != nil {
				// Refused before anything reads it (the broker's max_message_size caps
				// what the client library buffered).
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.refuse(hctx, sess, d, "invalid", err)
				}()
				continue
			}
			// Counted against its user here, in delivery order, so that a user's requests
			// are handled in the order they arrived; never waiting, so that the loop keeps
			// taking (and, beyond the bounds, refusing) deliveries whatever one user does.
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
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.refuseBusy(hctx, sess, d, refused)
				}()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer res.Release()
				s.serve(ctx, hctx, sess, d, res, sem, adm)
			}()
		}
	}
	if !ch.IsClosed() {
		if err := ch.Cancel(tag, false); err != nil {
			s.log.Debug("cancel consumer", "err", err)
		}
	}
	if !waitTimeout(&wg, s.cfg.ShutdownTimeout) {
		s.log.Warn("in-flight requests did not finish in time; cancelling them", "timeout", s.cfg.ShutdownTimeout)
		hcancel()
		wg.Wait()
	}
	if failure != nil {
		s.log.Warn("session failed; reconnecting", "err", failure)
		_ = conn.Close()
		return failure
	}
	return ctx.Err()
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
	pubMu sync.Mutex
	pub   *amqp.Channel
}

// publishReply publishes on the shared reply channel and waits for the broker's
// confirm (outside the channel's lock, so replies do not wait on one another's
// round trips).
func (s *session) publishReply(ctx context.Context, key string, msg amqp.Publishing) error {
	s.pubMu.Lock()
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, "", key, false, false, msg)
	s.pubMu.Unlock()
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
