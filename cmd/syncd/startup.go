package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Start-up while a dependency is down (issue 15 item 4): syncd binds its HTTP listener
// first, so /healthz answers and /readyz says what it waits for, then opens the database
// again and again with a bounded back-off for as long as -startup-timeout allows,
// instead of exiting at the first refused connection (a database restarting, a standby
// being promoted). The broker needs nothing of this: every connection user reconnects
// on its own (transport/broker) and /readyz stays false until the RPC server consumes.

// Back-off between attempts to open the database at start-up.
const (
	startupMinBackoff = 100 * time.Millisecond
	startupMaxBackoff = 5 * time.Second
)

// earlyHTTP serves -http from before the node exists: /healthz is ok, /readyz is 503
// naming what syncd waits for. Once the node is built, its handler takes over on the
// same listener (the address was already logged; with port 0 it is the only place it
// is told).
type earlyHTTP struct {
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
	waiting atomic.Pointer[string]
	served  chan error // Serve's result, once
}

// listenHTTP binds addr and serves on it until shutdown.
func listenHTTP(addr string, log *slog.Logger) (*earlyHTTP, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http %s: %w", addr, err)
	}
	log.Info("http listening", "addr", l.Addr().String())
	e := &earlyHTTP{served: make(chan error, 1)}
	e.setWaiting("starting")
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		err := e.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		e.served <- err
	}()
	return e, nil
}

func (e *earlyHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := e.handler.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		fmt.Fprintln(w, "ok")
	case "/readyz":
		http.Error(w, "not ready: "+*e.waiting.Load(), http.StatusServiceUnavailable)
	default:
		http.NotFound(w, r)
	}
}

// setWaiting sets what /readyz reports until the node's handler takes over.
func (e *earlyHTTP) setWaiting(what string) { e.waiting.Store(&what) }

// handOver makes h serve every request from now on.
func (e *earlyHTTP) handOver(h http.Handler) { e.handler.Store(&h) }

// wait returns when the server stops: nil after shutdown, else why it failed.
func (e *earlyHTTP) wait() error {
	err := <-e.served
	e.served <- err // for a later wait
	return err
}

// shutdown stops the server (idempotent), letting requests in progress finish until ctx
// ends.
func (e *earlyHTTP) shutdown(ctx context.Context) error { return e.srv.Shutdown(ctx) }

// openNodeRetrying opens the node, retrying while the database is unavailable, with a
// back-off from startupMinBackoff doubling to startupMaxBackoff, every attempt logged,
// until cfg.startupTimeout (0: until ctx ends). An error that waiting cannot cure (a DSN
// that does not parse, a refused password, a failed migration) ends it at once.
// waiting, if not nil, is told what is awaited.
func openNodeRetrying(ctx context.Context, cfg config, log *slog.Logger, waiting func(string)) (*node, error) {
	if cfg.startupTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.startupTimeout)
		defer cancel()
	}
	backoff := startupMinBackoff
	for attempt := 1; ; attempt++ {
		n, err := openNode(ctx, cfg, log)
		if err == nil {
			if attempt > 1 {
				log.Info("database reachable; starting", "attempts", attempt)
			}
			return n, nil
		}
		if !unavailable(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("database still unavailable after %d attempts (-startup-timeout %s): %w", attempt, cfg.startupTimeout, err)
		}
		if waiting != nil {
			waiting(fmt.Sprintf("waiting for the database (attempt %d): %v", attempt, err))
		}
		log.Warn("database unavailable; retrying", "err", err, "attempt", attempt, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("database still unavailable after %d attempts (-startup-timeout %s): %w", attempt, cfg.startupTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, startupMaxBackoff)
	}
}

// unavailable reports an error that waiting may cure: the server cannot be reached, is
// starting up or shutting down, has no connection slot free, or is a standby (read-only:
// a failover is under way). Authentication failures and every other server error are
// not.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", // admin/crash shutdown, cannot connect now
			"53300", // too many connections
			"25006": // read-only transaction: connected to a standby
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection exception
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return eventstore.Transient(err) || errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}
