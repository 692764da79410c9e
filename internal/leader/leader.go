// Package leader runs a task on exactly one process at a time across any number of
// processes sharing a PostgreSQL database, using a session advisory lock held on a
// dedicated connection. When the holder dies or loses its connection, another process
// takes over. It never runs the task without holding the lock.
package leader

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key derives the advisory-lock key of a named role ("projector:workspace", "notifier").
func Key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("syncservice:" + name))
	return int64(h.Sum64())
}

// Config configures Run.
type Config struct {
	// DSN of the database whose advisory lock elects the leader. Required.
	DSN string
	// Name of the role; the lock key is Key(Name). Required.
	Name string
	// Retry is how often a follower tries to take the lock, and the back-off after the
	// task fails. Default 1s.
	Retry time.Duration
	// Check is how often the leader verifies its lock connection is alive. Default 1s.
	Check  time.Duration
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; DSN and Name are left to the caller.
func DefaultConfig() Config {
	return Config{Retry: time.Second, Check: time.Second, Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Retry == 0 {
		c.Retry = d.Retry
	}
	if c.Check == 0 {
		c.Check = d.Check
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.DSN == "" || c.Name == "" {
		return errors.New("leader: DSN and Name are required")
	}
	if c.Retry < 0 || c.Check < 0 {
		return errors.New("leader: Retry and Check must not be negative")
	}
	return nil
}

// Run calls task whenever this process holds the role's lock, until ctx ends. The
// task's context is cancelled as soon as the lock may be lost. A task that returns
// (with or without error) is restarted after Retry while the lock is still wanted. Run
// returns ctx.Err() when ctx ends.
func Run(ctx context.Context, cfg Config, task func(ctx context.Context) error) error {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger.With("role", cfg.Name)
	key := Key(cfg.Name)
	for {
		err := holdAndRun(ctx, cfg, key, log, task)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, errNotLeader) {
			log.Warn("leader task stopped; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.Retry):
		}
	}
}

var errNotLeader = errors.New("lock held elsewhere")

func holdAndRun(ctx context.Context, cfg Config, key int64, log *slog.Logger, task func(ctx context.Context) error) error {
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(dialCtx, cfg.DSN)
	cancel()
	if err != nil {
		return fmt.Errorf("leader %s: connect: %w", cfg.Name, err)
	}
	defer conn.Close(context.Background())
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return fmt.Errorf("leader %s: try lock: %w", cfg.Name, err)
	}
	if !got {
		return errNotLeader
	}
	log.Info("became leader")
	taskCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- task(taskCtx) }()
	tick := time.NewTicker(cfg.Check)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			// Closing the connection releases the session lock.
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("leader %s: task: %w", cfg.Name, err)
			}
			return nil
		case <-tick.C:
			pingCtx, cancel := context.WithTimeout(ctx, cfg.Check*5)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil && ctx.Err() == nil {
				log.Warn("lost leader connection; stopping task", "err", err)
				stop()
				<-done
				return fmt.Errorf("leader %s: lock connection lost: %w", cfg.Name, err)
			}
		}
	}
}
