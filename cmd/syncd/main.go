// Command syncd is the sync server: it answers devices' requests on the ISyncService
// queue, appends their commits to the event store, keeps the read models up to date,
// publishes notifyCommit events after they are durable, and keeps device event queues
// bound to the workspaces their users belong to. Every role runs in one process by
// default; -roles splits them across processes for scale-out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncd:", err)
		os.Exit(2)
	}
	log := newLogger(cfg, os.Stderr)
	limit, source := applyMemoryLimit(int64(cfg.memoryLimit), os.Getenv, int64(cfg.changesCache))
	log.Info("memory limit", "limit", formatLimit(limit), "from", source)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("syncd stopped", "err", err)
		os.Exit(1)
	}
	log.Info("syncd stopped")
}

// run starts every role of cfg and blocks until ctx ends or a role fails; then it stops
// them in order: consuming first (in-flight requests finish), then followers, then the
// connections.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	var hs *earlyHTTP
	waiting := func(string) {}
	if cfg.httpAddr != "" {
		var err error
		if hs, err = listenHTTP(cfg.httpAddr, log); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.shutdown(sctx)
		}()
		waiting = hs.setWaiting
	}
	n, err := openNodeRetrying(ctx, cfg, log, waiting)
	if err != nil {
		return err
	}
	defer n.close()
	n.http = hs
	// Build every component first; nothing runs until all of them exist.
	if err := n.addProjectors(); err != nil {
		return err
	}
	if err := n.addDirect(); err != nil {
		return err
	}
	if err := n.addNotifier(); err != nil {
		return err
	}
	if err := n.addBinder(); err != nil {
		return err
	}
	svc, err := n.newService()
	if err != nil {
		return err
	}
	if err := n.addRPC(svc); err != nil {
		return err
	}
	if err := n.addLegacy(ctx, svc); err != nil {
		return err
	}
	return n.serve(ctx)
}

// Role and checkpoint-row names of the binder and the notifier; the notifier's horizon
// and the RPC server read their checkpoints.
const (
	binderName   = "binder"
	notifierName = "notifier"
)

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ensureDatabase creates the DSN's database when it does not exist, connecting to the
// server's maintenance database (postgres) to do so.
func ensureDatabase(ctx context.Context, dsn string) error {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("parse -pg: %w", err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to %s: %w", redact(dsn), err)
	}
	adminCfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	adminCfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, adminCfg)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", pc.Database, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{pc.Database}.Sanitize()); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P04" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", pc.Database, err)
	}
	return nil
}

// redact hides the password of a URL-form DSN for logs.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// httpHandler serves /healthz, /readyz and /metrics, and with withPprof the profiles of
// net/http/pprof under /debug/pprof/ (the index lists them: heap, goroutine, allocs,
// block, mutex; /debug/pprof/profile is a CPU profile, /debug/pprof/trace a trace).
func httpHandler(reg *prometheus.Registry, ready []func(context.Context) error, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var failed []string
		for _, check := range ready {
			if err := check(ctx); err != nil {
				failed = append(failed, err.Error())
			}
		}
		if len(failed) > 0 {
			http.Error(w, "not ready: "+strings.Join(failed, "; "), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
