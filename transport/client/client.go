// Package client is the Go library a program uses to act as a device of the sync
// service (PROTOCOL.md): typed calls of every ISyncService method with timeouts and
// retries that re-send the same requestId and correlation id, and a consumer of the
// device's event queue that delivers notifyCommit events in workspaceVersion order,
// catching up with getChangesSince at start, after a reconnect and on every gap. Tests
// and the load generator use it. It speaks the protocol's vocabulary (domain/protocol)
// and links neither the service nor the server's database stack.
//
// It owns its reply queue and nothing else on the broker: it must never declare or
// bind the device's event queue (the server does, on updateDevice), and it never
// decides anything about the data it carries.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Config configures a Client.
type Config struct {
	// URL is the AMQP URL. With the broker identity of PROTOCOL.md §6 its user name is
	// the user's id. Required.
	URL string
	// UserID is the user the device belongs to. Required.
	UserID uuid.UUID
	// DeviceName, OS and AppVersion describe the device on UpdateDevice. Defaults
	// "go-client", runtime.GOOS, "".
	DeviceName, OS, AppVersion string
	// SharedLogin says the URL's login is not the user's own but an account several
	// users share (servers in trust mode): the client then never sets the AMQP user_id
	// property. Otherwise user_id is set to the URL's user name when that is UserID
	// (RabbitMQ refuses a user_id other than the login).
	SharedLogin bool
	// Timeout bounds each attempt of a call. Default 5s.
	Timeout time.Duration
	// Retries is how many times a call is re-sent (same requestId, same correlation
	// id) after a timeout or a Busy answer. Default 3.
	Retries int
	// ChangesLimit is the page size of catch-up reads. Default 1000.
	ChangesLimit int
	// Prefetch bounds unacked events in flight. Default 100.
	Prefetch int
	// Name is the connection name shown by the broker. Default "syncclient-<user>".
	Name string
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts, and between
	// restarts of the event consumer after an event failed (the wait doubles while
	// no event gets acked). Defaults those of broker.Config (100ms, 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the client's logs. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; URL and UserID are left to the caller, and Name
// defaults to "syncclient-<UserID>" in Dial.
func DefaultConfig() Config {
	return Config{
		DeviceName:   "go-client",
		OS:           runtime.GOOS,
		Timeout:      5 * time.Second,
		Retries:      3,
		ChangesLimit: wire.DefaultChangesLimit,
		Prefetch:     100,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns c with every empty field set from DefaultConfig (and Name from
// UserID).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DeviceName == "" {
		c.DeviceName = d.DeviceName
	}
	if c.OS == "" {
		c.OS = d.OS
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Retries == 0 {
		c.Retries = d.Retries
	}
	if c.ChangesLimit == 0 {
		c.ChangesLimit = d.ChangesLimit
	}
	if c.Prefetch == 0 {
		c.Prefetch = d.Prefetch
	}
	if c.Name == "" {
		c.Name = "syncclient-" + c.UserID.String()
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks the configuration (an empty field stands for its default); it changes
// nothing.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("client: URL is required")
	}
	if c.UserID == uuid.Nil {
		return errors.New("client: UserID is required")
	}
	if c.Timeout < 0 || c.Retries < 0 || c.ChangesLimit < 0 || c.Prefetch < 0 {
		return errors.New("client: Timeout, Retries, ChangesLimit and Prefetch must not be negative")
	}
	if c.ChangesLimit > wire.MaxChangesLimit {
		return fmt.Errorf("client: ChangesLimit %d exceeds %d", c.ChangesLimit, wire.MaxChangesLimit)
	}
	return nil
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("client: closed")

// ErrTimeout is returned when no attempt of a call was answered in time.
var ErrTimeout = errors.New("client: no reply")

// Error is an error answer of the server. errors.Is(err, protocol.ErrXxx) holds for the
// protocol error kind its code stands for (wire.ErrInternal for Internal).
type Error struct {
	Method     string
	Code       string // the wire error type
	Message    string
	RetryAfter time.Duration // Busy only
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", e.Method, e.Code, e.Message) }

// Unwrap returns the protocol error kind the code stands for.
func (e *Error) Unwrap() error { return wire.ErrOf(e.Code) }

// Client is a connected device. Its methods are safe for concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	userProp string // the AMQP user_id to set, "" for none

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	sess    *session
	ready   chan struct{}          // closed when sess is set; replaced when it is cleared
	pending map[string]chan []byte // reply bodies, by correlation id
	device  uuid.UUID

	ev events
}

// session is one connection's reply queue and publishing channel.
type session struct {
	replyQ string
	mu     sync.Mutex
	ch     *amqp.Channel // confirm mode
}

// Dial connects and returns a client that keeps itself connected until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	uri, err := amqp.ParseURI(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("client: parse URL: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With("component", "client", "user", cfg.UserID),
		ready: make(chan struct{}), pending: map[string]chan []byte{}, done: make(chan struct{})}
	c.ev.init()
	if !cfg.SharedLogin && uri.Username == cfg.UserID.String() {
		c.userProp = uri.Username
	}
	bcfg := broker.Config{URL: cfg.URL, Name: cfg.Name, MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff, Logger: cfg.Logger}
	// A first connection reports a wrong URL or login at once instead of retrying.
	probe, err := broker.Dial(ctx, bcfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	_ = probe.Close()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(c.done)
		if err := broker.Run(c.ctx, bcfg, c.session); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Error("client stopped", "err", err)
		}
	}()
	if _, err := c.current(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close disconnects and waits for the client's goroutines. It is idempotent.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// current waits for a connected session.
func (c *Client) current(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ready := c.sess, c.ready
		c.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

func (c *Client) setSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != nil {
		c.sess = s
		close(c.ready)
		return
	}
	c.sess = nil
	c.ready = make(chan struct{})
}

// session runs on one connection: declares the reply queue, routes replies to the
// waiting calls, and consumes events once subscribed.
func (c *Client) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("client: open channel: %w", err)
	}
	defer ch.Close()
	replyQ := "reply." + c.cfg.UserID.String() + "." + uuid.NewString()
	if _, err := ch.QueueDeclare(replyQ, false, true, true, false, nil); err != nil {
		_ = conn.Close()
		return fmt.Errorf("client: declare %s: %w", replyQ, err)
	}
	replies, err := ch.Consume(replyQ, "", true, true, false, false, nil)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("client: consume %s: %w", replyQ, err)
	}
	pub, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("client: open publishing channel: %w", err)
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		_ = conn.Close()
		return fmt.Errorf("client: confirm mode: %w", err)
	}
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	c.setSession(&session{replyQ: replyQ, ch: pub})
	defer c.setSession(nil)

	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.ev.run(sctx, c, conn)
	}()
	defer wg.Wait()
	defer stop()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-pubClosed:
			_ = conn.Close() // start over on a fresh connection
			return fmt.Errorf("client: publishing channel closed: %v", e)
		case d, ok := <-replies:
			if !ok {
				_ = conn.Close()
				return errors.New("client: reply stream ended")
			}
			c.route(d)
		}
	}
}

// route hands a reply's body to the call waiting for its correlation id, which decodes
// it (in one pass with the result where it can: wire.ParseItemsReply); replies nobody
// waits for (late copies of retried calls) are dropped, an error answer among them logged.
func (c *Client) route(d amqp.Delivery) {
	c.mu.Lock()
	w := c.pending[d.CorrelationId]
	c.mu.Unlock()
	if w == nil {
		r, err := wire.ParseReply(d.Body)
		switch {
		case err != nil:
			c.log.Warn("undecodable reply", "correlation_id", d.CorrelationId, "err", err)
		case r.Error != nil:
			c.log.Warn("error answer to a request no longer waited for (an async commit, or a retried call)",
				"correlation_id", d.CorrelationId, "code", r.Error.Type, "message", r.Error.Message)
		}
		return
	}
	select {
	case w <- d.Body:
	default:
	}
}

// publish sends a request envelope to the RPC exchange on the current session and,
// when confirm is set, waits for the broker to take it.
func (c *Client) publish(ctx context.Context, s *session, corr string, body []byte, confirm bool) error {
	msg := amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: wire.IDOmq,
		CorrelationId: corr, ReplyTo: s.replyQ, UserId: c.userProp, Body: body}
	s.mu.Lock()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, topology.RPCExchange, topology.RequestQueue, false, false, msg)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if !confirm {
		// Not waited for, but still watched: a nack retires the channel.
		go func() {
			<-dc.Done()
			if !dc.Acked() {
				s.retire()
			}
		}()
		return nil
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		s.retire()
		return errors.New("broker refused the request")
	}
	return nil
}

// retire closes the session's publishing channel after the broker refused a publish
// (the session then starts over on a fresh connection). On a cluster, a channel whose
// publishes to the ISyncService quorum queue were refused while the queue's leader moved
// to another node was seen refusing every later one too, while a fresh channel's were
// taken (the notifier, which opens a new channel after a nack, recovered at once).
func (s *session) retire() { _ = s.ch.Close() }

// call sends a request and waits for its reply, re-sending the same body (same
// requestId, same correlation id) after each timeout or Busy answer, and decodes the
// result into out (unless nil).
func (c *Client) call(ctx context.Context, method string, params any, out any) error {
	return c.callDecode(ctx, method, params, func(body []byte) (*wire.Error, error) {
		r, err := wire.ParseReply(body)
		if err != nil || r.Error != nil || out == nil {
			return r.Error, err
		}
		if err := json.Unmarshal(r.Result, out); err != nil {
			return nil, fmt.Errorf("decode result: %w", err)
		}
		return nil, nil
	})
}

// callDecode is call with the reply decoded by decode, which returns the reply's error
// answer if it carries one, or an error if the reply cannot be decoded.
func (c *Client) callDecode(ctx context.Context, method string, params any, decode func(body []byte) (*wire.Error, error)) error {
	corr := uuid.NewString()
	body, err := json.Marshal(map[string]any{"method": method, "params": []any{params}, "id": corr, "async": false})
	if err != nil {
		return fmt.Errorf("%s: encode: %w", method, err)
	}
	w := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[corr] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, corr)
		c.mu.Unlock()
	}()
	var last error = ErrTimeout
	for attempt := 0; attempt <= c.cfg.Retries; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		reply, err := c.attempt(actx, corr, body, w)
		cancel()
		var answer *wire.Error
		if err == nil {
			if answer, err = decode(reply); err != nil {
				return fmt.Errorf("%s: %w", method, err)
			}
		}
		switch {
		case err == nil && answer == nil:
			return nil
		case err == nil:
			e := &Error{Method: method, Code: answer.Type, Message: answer.Message}
			if answer.Type != wire.CodeBusy {
				return e
			}
			if answer.RetryAfterMs != nil {
				e.RetryAfter = time.Duration(*answer.RetryAfterMs) * time.Millisecond
			}
			last = e
			if attempt < c.cfg.Retries {
				select {
				case <-time.After(e.RetryAfter):
				case <-ctx.Done():
					return fmt.Errorf("%s: %w", method, ctx.Err())
				}
			}
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w", method, ctx.Err())
		case c.ctx.Err() != nil:
			return fmt.Errorf("%s: %w", method, ErrClosed)
		default:
			last = fmt.Errorf("%w: %v", ErrTimeout, err)
			c.log.Debug("call attempt failed; re-sending", "method", method, "attempt", attempt+1, "err", err)
		}
	}
	return fmt.Errorf("%s after %d attempts: %w", method, c.cfg.Retries+1, last)
}

// attempt publishes once and waits for the reply until ctx ends.
func (c *Client) attempt(ctx context.Context, corr string, body []byte, w chan []byte) ([]byte, error) {
	s, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.publish(ctx, s, corr, body, false); err != nil {
		<-ctx.Done() // the session is failing; this attempt is spent
		return nil, fmt.Errorf("publish: %w", err)
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
