package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// AuthMode says where the server takes a caller's identity from (PROTOCOL.md §6).
type AuthMode int

const (
	// AuthBroker (the default) takes the identity from the AMQP user_id property, which
	// RabbitMQ verifies against the connection's login. A request without user_id, with a
	// user_id that is not a user id, or whose body userId differs, is Unauthorized.
	AuthBroker AuthMode = iota
	// AuthTrust accepts requests without user_id and trusts the body's userId, for
	// legacy clients on a closed network. A user_id that is a UUID is still checked.
	AuthTrust
)

func (m AuthMode) String() string {
	switch m {
	case AuthBroker:
		return "broker"
	case AuthTrust:
		return "trust"
	}
	return fmt.Sprintf("AuthMode(%d)", int(m))
}

// Config configures a Server.
type Config struct {
	// URL is the AMQP URL of the broker. Required.
	URL string
	// Name is the connection name shown by the broker. Default "syncd-rpc".
	Name string
	// RequestQueue is the queue consumed for requests. Default topology.RequestQueue;
	// tests may use another name.
	RequestQueue string
	// Concurrency bounds the requests handled at once. Default 32.
	Concurrency int
	// Prefetch is the consumer's prefetch count. Default 2×Concurrency.
	Prefetch int
	// RequestTimeout is each request's deadline. Default 30s.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests when the server stops;
	// after it, their contexts are cancelled. Default 10s.
	ShutdownTimeout time.Duration
	// Auth selects the identity mode. Default AuthBroker.
	Auth AuthMode
	// QueueOptions bound the device event queues declared on updateDevice.
	QueueOptions topology.QueueOptions
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts. Defaults
	// those of broker.Config (100ms, 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// Metrics receives per-request measurements. Default: none.
	Metrics Metrics
	// Stages, if set, receives the stage timing of every handled request (its
	// internal/stages Trace, marked by the layers it went through; method as in
	// Metrics.Request) once it is acked. Nil (the default): no request is traced.
	Stages func(method string, t *stages.Trace)
	// Bound, if set, reports how far the binder has applied the global order;
	// updateDevice replies once it has passed the device's event (then the device's
	// queue is bound to every workspace of its user). Nil: reply at once.
	Bound func(ctx context.Context) (eventstore.Position, error)
	// Published, if set, reports how far the notifier has published; a repeated commit
	// is published again once its event is behind it (waiting up to ProgressWait: before
	// that, the notifier owes the first publication and makes it in order). Nil: always
	// republish at once.
	Published func(ctx context.Context) (eventstore.Position, error)
	// ProgressWait bounds the waits for Bound and Published; after it, updateDevice
	// answers Busy and a repeated commit is not republished (the notifier still owes it).
	// Default 5s.
	ProgressWait time.Duration

	// MaxInFlightBytes bounds the memory held by the requests being served: each
	// delivery's body is reserved before it is handled (the consumer waits for room),
	// a read grows the reservation as its answer is built and the reply by its encoded
	// size (a request that cannot grow it is answered Busy). Default 256 MiB; at least
	// wire.MaxBodySize + MaxReplyBytes.
	MaxInFlightBytes int64
	// MaxReplyBytes bounds a reply's body: a reply over it is replaced by a
	// ResultTooLarge error before it is published, so the broker (whose
	// max_message_size defaults to 128 MiB) never refuses it and closes the reply
	// channel every request shares. Default 96 MiB.
	MaxReplyBytes int
	// PerUserInFlight bounds one user's requests handled at once (holding a request
	// slot). The user is the verified user_id, the body's userId in trust mode, else
	// "anonymous". Default min(8, Concurrency/2) (at least 1); it must be below
	// Concurrency so one user always leaves slots to the others. Negative: no per-user
	// bound (PerUserQueued is then ignored).
	PerUserInFlight int
	// PerUserQueued bounds one user's further requests that wait, in the order they
	// arrived, for one of the user's PerUserInFlight places, and QueuedTotal the waiting
	// requests of all users together: a device may pipeline PerUserInFlight +
	// PerUserQueued requests without being told Busy. A request beyond these bounds is
	// answered Busy at once and nothing is done, so a flood is drained from the request
	// queue quickly and the waiting requests never hold more than QueuedTotal of the
	// Prefetch window (the rest stays open for the others; every user always has their
	// PerUserInFlight places). Defaults QueuedTotal and Prefetch/2: a backlog of a
	// device's requests that built up while no server ran is taken whole. Negative:
	// none wait.
	PerUserQueued int
	QueuedTotal   int
	// PerUserBytes bounds the request bodies one user has taken and not yet answered
	// (handled or waiting); beyond it a request is answered Busy. Default
	// MaxInFlightBytes/4, at least wire.MaxBodySize.
	PerUserBytes int64
	// BusyRetryAfter is the retryAfterMs of the Busy answers of these limits. Default
	// 500ms.
	BusyRetryAfter time.Duration
	// ReplayWindow: a replayed commit republishes its original notification at most
	// once per (workspace, requestId) within this window, per server process; further
	// replays in it publish nothing. Default 10s.
	ReplayWindow time.Duration
	// ReplayBytes bounds the notification bytes one user's replays republish within a
	// ReplayWindow, per server process; replays beyond it publish nothing (the devices
	// catch up with getChangesSince). Default 16 MiB.
	ReplayBytes int64
	// ChangesCacheBytes bounds the encoded getChanges answers kept in memory, each by
	// its workspace's version (and row), so that a repeated getChanges of a workspace
	// nothing was committed to since costs one indexed lookup; the least recently used
	// go first. Default DefaultChangesCacheBytes (64 MiB); negative: no cache.
	ChangesCacheBytes int64
}

// Defaults of the byte bounds.
const (
	DefaultMaxInFlightBytes = 256 << 20
	DefaultMaxReplyBytes    = 96 << 20
	// DefaultChangesCacheBytes is the default of ChangesCacheBytes.
	DefaultChangesCacheBytes = 64 << 20
)

// DefaultConfig returns the defaults that stand alone; URL is left to the caller, and
// the defaults derived from other fields (Prefetch, MaxInFlightBytes, PerUserInFlight,
// PerUserQueued, QueuedTotal, PerUserBytes) stay zero: WithDefaults derives them.
func DefaultConfig() Config {
	return Config{
		Name:              "syncd-rpc",
		RequestQueue:      topology.RequestQueue,
		Concurrency:       32,
		RequestTimeout:    30 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		ProgressWait:      5 * time.Second,
		MaxReplyBytes:     DefaultMaxReplyBytes,
		BusyRetryAfter:    500 * time.Millisecond,
		ReplayWindow:      10 * time.Second,
		ReplayBytes:       16 << 20,
		ChangesCacheBytes: DefaultChangesCacheBytes,
		Logger:            slog.New(slog.DiscardHandler),
		Metrics:           noMetrics{},
	}
}

// WithDefaults returns c with every zero field set: from DefaultConfig, or derived from
// the other fields as each field's comment says. A negative PerUserQueued or
// QueuedTotal becomes 0 (none wait). NewServer calls it before Validate.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	setStr := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	setDur := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	setStr(&c.Name, d.Name)
	setStr(&c.RequestQueue, d.RequestQueue)
	setDur(&c.ProgressWait, d.ProgressWait)
	setDur(&c.RequestTimeout, d.RequestTimeout)
	setDur(&c.ShutdownTimeout, d.ShutdownTimeout)
	setDur(&c.BusyRetryAfter, d.BusyRetryAfter)
	setDur(&c.ReplayWindow, d.ReplayWindow)
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2 * c.Concurrency
	}
	if c.MaxReplyBytes == 0 {
		c.MaxReplyBytes = d.MaxReplyBytes
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = max(DefaultMaxInFlightBytes, int64(wire.MaxBodySize+c.MaxReplyBytes))
	}
	if c.PerUserInFlight == 0 {
		c.PerUserInFlight = max(1, min(8, c.Concurrency/2))
	}
	if c.QueuedTotal == 0 {
		c.QueuedTotal = c.Prefetch / 2
	}
	if c.PerUserQueued == 0 {
		c.PerUserQueued = c.QueuedTotal
	}
	c.PerUserQueued, c.QueuedTotal = max(c.PerUserQueued, 0), max(c.QueuedTotal, 0)
	if c.PerUserBytes == 0 {
		c.PerUserBytes = max(c.MaxInFlightBytes/4, wire.MaxBodySize)
	}
	if c.ReplayBytes == 0 {
		c.ReplayBytes = d.ReplayBytes
	}
	if c.ChangesCacheBytes == 0 {
		c.ChangesCacheBytes = d.ChangesCacheBytes
	}
	if c.Metrics == nil {
		c.Metrics = d.Metrics
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks the configuration that WithDefaults makes of c; it changes nothing.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("rpc: URL is required")
	}
	if c.Concurrency < 0 || c.Prefetch < 0 || c.RequestTimeout < 0 || c.ShutdownTimeout < 0 || c.ProgressWait < 0 {
		return errors.New("rpc: Concurrency, Prefetch and timeouts must not be negative")
	}
	if c.MaxInFlightBytes < 0 || c.MaxReplyBytes < 0 || c.BusyRetryAfter < 0 || c.ReplayWindow < 0 {
		return errors.New("rpc: MaxInFlightBytes, MaxReplyBytes, BusyRetryAfter and ReplayWindow must not be negative")
	}
	c = c.WithDefaults()
	if c.MaxInFlightBytes < int64(wire.MaxBodySize+c.MaxReplyBytes) {
		return fmt.Errorf("rpc: MaxInFlightBytes %d is below the largest body plus the largest reply (%d)",
			c.MaxInFlightBytes, wire.MaxBodySize+c.MaxReplyBytes)
	}
	if c.PerUserInFlight > 0 && c.Concurrency > 1 && c.PerUserInFlight >= c.Concurrency {
		return fmt.Errorf("rpc: PerUserInFlight %d must be below Concurrency %d, so that one user leaves slots to the others",
			c.PerUserInFlight, c.Concurrency)
	}
	if c.PerUserBytes < wire.MaxBodySize {
		return fmt.Errorf("rpc: PerUserBytes %d is below the largest body (%d)", c.PerUserBytes, wire.MaxBodySize)
	}
	if c.Auth != AuthBroker && c.Auth != AuthTrust {
		return fmt.Errorf("rpc: unknown auth mode %d", int(c.Auth))
	}
	return nil
}
