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
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/notify"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/topology"
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
	if cfg.createDB {
		if err := ensureDatabase(ctx, cfg.pgDSN); err != nil {
			return err
		}
	}
	scfg := postgres.Config{DSN: cfg.pgDSN, Logger: log.With("component", "eventstore")}
	if cfg.inline {
		// The read models' tables must exist before the first append: they are
		// migrated below, before any role runs.
		scfg.Inline = projections.Inline
	}
	store, err := postgres.Open(ctx, scfg)
	if err != nil {
		return fmt.Errorf("open event store: %w", err)
	}
	defer store.Close()
	pool, err := pgxpool.New(ctx, cfg.pgDSN)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	if err := projections.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate read models: %w", err)
	}
	if err := notify.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate notifier and binder tables: %w", err)
	}
	if err := itemids.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate item ids: %w", err)
	}
	queries := projections.NewQueries(pool)
	queries.MaxResultBytes, queries.PageBytes = int64(cfg.maxResultBytes), int64(cfg.pageBytes)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg)

	// Build every component first; nothing runs until all of them exist.
	var ready []func(context.Context) error
	var wake []func() // in-process followers to nudge after an append
	var followers []func(ctx context.Context) error
	ready = append(ready, func(ctx context.Context) error { return pool.Ping(ctx) })

	// applied nudges the notifier when the workspace model moved its checkpoint (the
	// notifier's horizon); set once the notifier exists.
	var applied atomic.Pointer[func()]
	if cfg.has("projector") {
		for _, model := range projections.Models() {
			var onApplied func()
			if model.Name() == projections.ModelWorkspaces {
				onApplied = func() {
					if f := applied.Load(); f != nil {
						(*f)()
					}
				}
			}
			p, err := projections.New(projections.Config{Model: model.Name(), DSN: cfg.pgDSN, Pool: pool, Source: store,
				Logger: log.With("component", "projector"), OnApplied: onApplied})
			if err != nil {
				return err
			}
			m.watchProjector(p, store)
			// Not ready while a projector is stuck (it names itself, its checkpoint and
			// the error); events it set aside do not count.
			ready = append(ready, func(context.Context) error { return p.Healthy() })
			followers = append(followers, p.Run)
		}
	}
	binderAt := func(ctx context.Context) (eventstore.Position, error) {
		return notify.LoadCheckpoint(ctx, pool, binderName)
	}
	crash, err := crashBeforePublish(os.Getenv(crashBeforePublishEnv), log)
	if err != nil {
		return err
	}
	// The process that appends a commit publishes its notification at once when it can
	// (the read models were written inline); the notifier is the backstop.
	var direct *notify.Direct
	if cfg.has("rpc") && cfg.inline && cfg.directPublish {
		direct, err = notify.NewDirect(notify.DirectConfig{AMQPURL: cfg.amqpURL, Logger: log,
			MaxMessageBytes: cfg.maxMessageBytes, BeforePublish: crash, Bound: binderAt,
			Published: func(ctx context.Context) (eventstore.Position, error) {
				return notify.LoadCheckpoint(ctx, pool, notifierName)
			}})
		if err != nil {
			return err
		}
		m.watchDirect(direct)
		followers = append(followers, direct.Run)
	}
	var notifierWake func() // set when this process notifies
	if cfg.has("notifier") {
		var ahead func(context.Context, uuid.UUID) bool
		if direct != nil {
			ahead = direct.Ahead
		}
		n, err := notify.New(notify.Config{DSN: cfg.pgDSN, AMQPURL: cfg.amqpURL, Name: notifierName, Logger: log,
			MaxMessageBytes: cfg.maxMessageBytes, BeforePublish: crash, Ahead: ahead,
			// Publish a commit only when the binder has applied every membership and
			// device change before it (the commit reaches exactly the devices of its
			// members) and the workspace read model has it (reads see what was notified):
			// at once for an inline append, else once the projector applied it.
			Horizon: binderAt,
			ModelHorizon: func(ctx context.Context) (eventstore.Position, error) {
				return projections.Checkpoint(ctx, pool, projections.ModelWorkspaces)
			},
		}, store)
		if err != nil {
			return err
		}
		m.watchNotifier(n)
		// Not ready while the notifier is stuck (no progress with events pending); what
		// it set aside does not count.
		ready = append(ready, func(context.Context) error { return n.Healthy() })
		wake = append(wake, n.Wake)
		notifierWake = n.Wake
		applied.Store(&notifierWake)
		followers = append(followers, n.Run)
	}
	if cfg.has("binder") {
		b, err := notify.NewBinder(notify.BinderConfig{DSN: cfg.pgDSN, AMQPURL: cfg.amqpURL, Name: binderName, Logger: log,
			QueueOptions: topology.QueueOptions{Expiry: cfg.queueExpiry, MaxLength: cfg.queueMaxLength},
			OnAdvanced:   notifierWake}, store)
		if err != nil {
			return err
		}
		m.watchBinder(b)
		ready = append(ready, func(context.Context) error { return b.Healthy() })
		wake = append(wake, b.Wake)
		followers = append(followers, b.Run)
	}
	svcCfg := service.DefaultConfig()
	svcCfg.CacheSize, svcCfg.Logger, svcCfg.GroupCommit = cfg.cacheSize, log.With("component", "service"), cfg.groupCommit
	svcCfg.Limits = cfg.limits // MaxEventBytes 0: the event store's record limit
	svcCfg.MaxCommitBatch = cfg.commitBatch
	svcCfg.OnAppend = func() {
		for _, w := range wake {
			w()
		}
	}
	if direct != nil {
		svcCfg.OnCommitted = func(ctx context.Context, c service.AppendedCommit) {
			direct.Publish(ctx, notify.Commit{EventID: c.EventID, Event: c.Event, Position: c.Position,
				Prev: c.Prev, MembersAt: c.MembersAt, Inline: true})
		}
	}
	svc, err := service.New(svcCfg, store, queries, itemids.NewPostgres(pool))
	if err != nil {
		return err
	}
	var srv *rpc.Server
	if cfg.has("rpc") {
		auth := rpc.AuthBroker
		if cfg.auth == "trust" {
			auth = rpc.AuthTrust
			log.Warn("auth=trust: identities are taken from request bodies unverified; use only for legacy clients on a closed network")
		}
		srv, err = rpc.NewServer(rpc.Config{
			URL: cfg.amqpURL, RequestQueue: cfg.requestQueue, Concurrency: cfg.concurrency, Prefetch: cfg.prefetch,
			RequestTimeout: cfg.requestTimeout, ShutdownTimeout: cfg.shutdownGrace, Auth: auth,
			QueueOptions: topology.QueueOptions{Expiry: cfg.queueExpiry, MaxLength: cfg.queueMaxLength},
			Logger:       log, Metrics: m,
			MaxInFlightBytes: int64(cfg.maxInFlightBytes), MaxReplyBytes: cfg.maxReplyBytes,
			PerUserInFlight: cfg.perUserInFlight, PerUserQueued: cfg.perUserQueued,
			QueuedTotal: cfg.queuedTotal, ChangesCacheBytes: int64(cfg.changesCache), PerUserBytes: int64(cfg.perUserBytes), ReplayBytes: int64(cfg.replayBytes), ReplayWindow: cfg.replayWindow,
			// updateDevice answers once the binder bound the device's queue; a repeated
			// commit is republished only once the notifier published it the first time.
			Bound: binderAt,
			Published: func(ctx context.Context) (eventstore.Position, error) {
				return notify.LoadCheckpoint(ctx, pool, notifierName)
			},
		}, countingService{svc, m})
		if err != nil {
			return err
		}
		defer srv.Close()
		ready = append(ready, func(context.Context) error {
			if !srv.Consuming() {
				return errors.New("not consuming requests (connecting to the broker)")
			}
			return nil
		})
	}

	// Run. Shutdown is ordered: the RPC server stops consuming and finishes its in-flight
	// requests first; only then do the followers (projectors, notifier, binder) stop, so
	// that what the last requests appended is still projected and notified if time allows
	// (what is not is picked up from the checkpoints at the next start).
	g, gctx := errgroup.WithContext(ctx)
	followCtx, stopFollowers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollowers()
	rpcDone := make(chan struct{})
	if srv != nil {
		g.Go(func() error { defer close(rpcDone); return ignoreCanceled(srv.Run(gctx)) })
	} else {
		close(rpcDone)
	}
	g.Go(func() error {
		<-gctx.Done()
		<-rpcDone
		stopFollowers()
		return nil
	})
	for _, run := range followers {
		g.Go(func() error {
			err := run(followCtx)
			if followCtx.Err() != nil {
				return nil
			}
			return err // a follower failing on its own stops the process
		})
	}
	if cfg.httpAddr != "" {
		hs := &http.Server{Addr: cfg.httpAddr, Handler: httpHandler(reg, ready, cfg.pprof), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			l, err := net.Listen("tcp", cfg.httpAddr)
			if err != nil {
				return fmt.Errorf("http %s: %w", cfg.httpAddr, err)
			}
			// The bound address: with port 0 (tests) the only place it is told.
			log.Info("http listening", "addr", l.Addr().String())
			if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http %s: %w", cfg.httpAddr, err)
			}
			return nil
		})
		g.Go(func() error {
			<-followCtx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	log.Info("syncd started", "roles", cfg.roles, "auth", cfg.auth, "database", redact(cfg.pgDSN), "broker", redact(cfg.amqpURL),
		"http", cfg.httpAddr, "pprof", cfg.pprof, "request_queue", cfg.requestQueue)
	fmt.Fprintf(os.Stderr, "\nsyncd is running. Next steps:\n"+
		"  add a user (prints their id, personal workspace and broker credentials):\n"+
		"    go run ./cmd/syncctl user add --name Alice --email alice@example.com\n"+
		"  health and metrics: curl http://%s/readyz  ·  curl http://%s/metrics\n"+
		"  stop with Ctrl-C (SIGTERM): in-flight requests finish first.\n\n", cfg.httpAddr, cfg.httpAddr)
	return g.Wait()
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
