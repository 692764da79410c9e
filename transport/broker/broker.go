// Package broker owns the server's connections to RabbitMQ: dialing with back-off,
// noticing a lost connection, and running a session (declare topology, consume,
// publish) again on a fresh connection after the broker restarts. It knows nothing of
// the sync protocol.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config configures a reconnecting connection.
type Config struct {
	// URL is the AMQP URL, e.g. amqp://guest:guest@127.0.0.1:5672/. Required.
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
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		return errors.New("broker: MinBackoff and MaxBackoff must not be negative")
	}
	return nil
}

// Dial opens one connection (no reconnecting).
func Dial(ctx context.Context, cfg Config) (*amqp.Connection, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.Name)
	type result struct {
		c   *amqp.Connection
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := amqp.DialConfig(cfg.URL, amqp.Config{Properties: props, Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(10 * time.Second)})
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("dial broker: %w", r.err)
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
	for {
		conn, err := Dial(ctx, cfg)
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
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("session ended with the connection", "err", err)
		}
	}
}
