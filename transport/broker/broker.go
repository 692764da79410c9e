// Package broker owns the server's connections to RabbitMQ: dialing with back-off,
// noticing a lost connection, and running a session (declare topology, consume,
// publish) again on a fresh connection after the broker restarts. With several URLs
// (the nodes of a cluster) it dials them in turn and moves on to the next node when a
// connection is lost. It knows nothing of the sync protocol.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config configures a reconnecting connection.
type Config struct {
	// URL is the AMQP URL, e.g. amqp://guest:guest@127.0.0.1:5672/, or several
	// separated by commas (the nodes of one cluster), tried in turn. Required.
	URL string
	// Name is shown in the broker's connection list and in logs. Default "syncservice".
	Name string
	// MinBackoff and MaxBackoff bound the wait between dial attempts. Defaults 100ms, 5s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// DefaultConfig returns the defaults; URL is left to the caller.
func DefaultConfig() Config {
	return Config{Name: "syncservice", MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("broker: URL is required")
	}
	for _, u := range URLs(c.URL) {
		if _, err := amqp.ParseURI(u); err != nil {
			return fmt.Errorf("broker: URL %s: %w", Redact(u), err)
		}
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return errors.New("broker: MinBackoff and MaxBackoff must not be negative")
	}
	return nil
}

// URLs splits a comma-separated list of AMQP URLs (blanks around them ignored).
func URLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Redact hides the password of an AMQP URL for logs.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// preferred remembers, per URL list, the index of the node dialed last with success, so
// that every connection of a process starts with the node that answered last and moves
// on together when it fails.
var preferred sync.Map // URL list → *atomic.Int64

func preferredOf(list string) *atomic.Int64 {
	v, _ := preferred.LoadOrStore(list, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// Dial opens one connection (no reconnecting): to the first of cfg's URLs that accepts
// one, starting with the one that answered last.
func Dial(ctx context.Context, cfg Config) (*amqp.Connection, error) {
	conn, _, err := dial(ctx, cfg, false)
	return conn, err
}

// dial tries cfg's URLs in turn from the preferred one (the one after it, with skip)
// and returns the connection and the URL it reached.
func dial(ctx context.Context, cfg Config, skip bool) (*amqp.Connection, string, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	urls := URLs(cfg.URL)
	pref := preferredOf(cfg.URL)
	start := int(pref.Load())
	if skip && len(urls) > 1 {
		start++
	}
	var errs []error
	for i := range urls {
		k := (start + i) % len(urls)
		conn, err := dialOne(ctx, cfg, urls[k])
		if err == nil {
			pref.Store(int64(k))
			return conn, urls[k], nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

// dialOne opens one connection to u.
func dialOne(ctx context.Context, cfg Config, u string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.Name)
	type result struct {
		c   *amqp.Connection
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := dialAMQP(u, amqp.Config{Properties: props})
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("dial broker %s: %w", hostOf(u), r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// hostOf is the host:port of an AMQP URL (for errors and logs: no credentials).
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	return p.Host
}

// Run dials and calls session with the connection; when the connection closes (broker
// restart, network loss) it cancels the session's context, waits for session to
// return, and starts over on a new connection after a back-off, until ctx ends. A
// session that returns while its connection is still open ends Run with its error (nil
// included). Run returns ctx.Err() when ctx ends.
func Run(ctx context.Context, cfg Config, session func(ctx context.Context, conn *amqp.Connection) error) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("conn", cfg.Name)
	backoff := cfg.MinBackoff
	multi := len(URLs(cfg.URL)) > 1
	lostBefore := false // the last connection was lost (not: the last dial failed)
	for {
		// After a lost connection, start with the next node: the one just lost is
		// likely down (a dial to a dead host may take the whole dial timeout).
		conn, at, err := dial(ctx, cfg, lostBefore)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("broker unreachable; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, cfg.MaxBackoff)
			continue
		}
		backoff = cfg.MinBackoff
		if multi || lostBefore {
			log.Info("broker connected", "node", hostOf(at))
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- session(sctx, conn) }()
		var lost bool
		select {
		case err = <-done:
			lost = conn.IsClosed()
		case amqpErr := <-closed:
			lost = true
			log.Warn("broker connection lost", "err", amqpErr)
			cancel()
			err = <-done
		case <-ctx.Done():
			cancel()
			err = <-done
		}
		cancel()
		_ = conn.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !lost {
			return err
		}
		lostBefore = true
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("session ended with the connection", "err", err)
		}
	}
}
