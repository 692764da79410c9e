package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/internal/storeopen"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/notify"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// node is one syncd process: its connections and the components of its roles, built one
// after another (each add* step may use what the earlier ones built) before serve runs
// them all.
type node struct {
	cfg     config
	log     *slog.Logger
	store   eventstore.Store // postgres or esdb (-store)
	pool    *pgxpool.Pool
	queries *projections.Queries
	// readPool and replica route heavy reads to a standby (-pg-read; replica.go).
	readPool *pgxpool.Pool
	replica  *projections.Replica
	reg      *prometheus.Registry
	m        *metrics

	ready     []func(context.Context) error // /readyz checks
	wake      []func()                      // in-process followers to nudge after an append
	followers []func(ctx context.Context) error
	crash     func(uuid.UUID, int64) // the tests' fault injection before a publish; nil in production

	// applied nudges the notifier when the workspace model moved its checkpoint (the
	// notifier's model horizon); set once the notifier exists.
	applied      atomic.Pointer[func()]
	notifierWake func() // set when this process notifies
	direct       *notify.Direct
	tail         *follow.Tail // the followers' shared reader (see reader)
	srv          *rpc.Server
	http         *earlyHTTP // the -http listener, bound before the node was opened; nil without -http
}

// openNode connects to the database (creating it if asked), opens the event store,
// migrates every table the roles use, and sets up the metrics registry.
func openNode(ctx context.Context, cfg config, log *slog.Logger) (*node, error) {
	if cfg.createDB {
		if err := ensureDatabase(ctx, cfg.pgDSN); err != nil {
			return nil, err
		}
	}
	crash, err := crashBeforePublish(os.Getenv(crashBeforePublishEnv), log)
	if err != nil {
		return nil, err
	}
	store, err := openEventStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, log: log, store: store, crash: crash}
	if n.pool, err = pgxpool.New(ctx, cfg.pgDSN); err != nil {
		store.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	for _, step := range []struct {
		what    string
		migrate func(context.Context, *pgxpool.Pool) error
	}{
		{"read models", projections.Migrate},
		{"notifier and binder tables", notify.Migrate},
		{"item ids", itemids.Migrate},
	} {
		if err := step.migrate(ctx, n.pool); err != nil {
			n.close()
			return nil, fmt.Errorf("migrate %s: %w", step.what, err)
		}
	}
	n.queries = projections.NewQueries(n.pool)
	n.queries.MaxResultBytes, n.queries.PageBytes = int64(cfg.maxResultBytes), int64(cfg.pageBytes)
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.m = newMetrics(n.reg)
	if !storeopen.IsESDB(cfg.store) {
		n.reg.MustRegister(horizonCollector(n.pool))
	}
	if err := n.openReplica(ctx); err != nil {
		n.close()
		return nil, err
	}
	n.ready = append(n.ready, func(ctx context.Context) error { return n.pool.Ping(ctx) })
	return n, nil
}

// close releases the node's connections; the RPC server first.
func (n *node) close() {
	if n.srv != nil {
		n.srv.Close()
	}
	n.closeReplica()
	n.pool.Close()
	n.store.Close()
}

// binderAt is the binder's checkpoint: a commit may reach devices once the binder has
// applied every membership and device change before it.
func (n *node) binderAt(ctx context.Context) (eventstore.Position, error) {
	return notify.LoadCheckpoint(ctx, n.pool, binderName)
}

// notifierAt is the notifier's checkpoint: every commit up to it was published.
func (n *node) notifierAt(ctx context.Context) (eventstore.Position, error) {
	return notify.LoadCheckpoint(ctx, n.pool, notifierName)
}

// followerLinger is how long a follower gathers events before reading again when it is
// off the commit path (offPath): the appends write the read models, and the appending
// process publishes. A backstop then handles commits in batches instead of one
// transaction per commit, which on a loaded machine competed with the commits.
func (n *node) followerLinger(offPath bool) time.Duration {
	if offPath {
		return 20 * time.Millisecond
	}
	return 0
}

// addProjectors adds a projector per read model (role projector).
func (n *node) addProjectors() error {
	if !n.cfg.has("projector") {
		return nil
	}
	for _, model := range projections.Models() {
		var onApplied func()
		if model.Name() == projections.ModelWorkspaces {
			onApplied = func() {
				if f := n.applied.Load(); f != nil {
					(*f)()
				}
			}
		}
		// With inline projection nearly every batch only moves the checkpoint: store
		// such a move at most once a second (and whenever the projector is idle).
		var every time.Duration
		if n.cfg.inline {
			every = time.Second
		}
		p, err := projections.New(projections.Config{Model: model.Name(), DSN: n.cfg.pgDSN, Pool: n.pool, Source: n.store, Reader: n.reader(),
			Logger: n.log.With("component", "projector"), OnApplied: onApplied, Linger: n.followerLinger(n.cfg.inline),
			CheckpointEvery: every})
		if err != nil {
			return err
		}
		n.m.watchProjector(p, n.store)
		n.addFollower(p.Run, p.Healthy, p.Wake)
	}
	return nil
}

// addDirect adds the direct publisher where this process appends commits with the read
// models inline: it publishes their notifications at once when it can; the notifier is
// the backstop.
func (n *node) addDirect() error {
	if !n.cfg.has("rpc") || !n.cfg.inline || !n.cfg.directPublish {
		return nil
	}
	d, err := notify.NewDirect(notify.DirectConfig{AMQPURL: n.cfg.amqpURL, Logger: n.log,
		MaxMessageBytes: n.cfg.maxMessageBytes, BeforePublish: n.crash, Bound: n.binderAt, Published: n.notifierAt})
	if err != nil {
		return err
	}
	n.direct = d
	n.m.watchDirect(d)
	n.followers = append(n.followers, d.Run)
	return nil
}

// addNotifier adds the notifier (role notifier).
func (n *node) addNotifier() error {
	if !n.cfg.has("notifier") {
		return nil
	}
	var ahead func(context.Context, uuid.UUID) bool
	if n.direct != nil {
		ahead = n.direct.Ahead
	}
	nt, err := notify.New(notify.Config{DSN: n.cfg.pgDSN, AMQPURL: n.cfg.amqpURL, Name: notifierName, Logger: n.log,
		MaxMessageBytes: n.cfg.maxMessageBytes, BeforePublish: n.crash, Ahead: ahead, Reader: n.reader(),
		Linger: n.followerLinger(n.cfg.inline && n.cfg.directPublish),
		// Publish a commit only when the binder has applied every membership and device
		// change before it (the commit reaches exactly the devices of its members) and
		// the workspace read model has it (reads see what was notified): at once for an
		// inline append, else once the projector applied it.
		Horizon: n.binderAt,
		ModelHorizon: func(ctx context.Context) (eventstore.Position, error) {
			return projections.Checkpoint(ctx, n.pool, projections.ModelWorkspaces)
		},
	}, n.store)
	if err != nil {
		return err
	}
	n.m.watchNotifier(nt)
	n.addFollower(nt.Run, nt.Healthy, nt.Wake)
	n.notifierWake = nt.Wake
	n.applied.Store(&n.notifierWake)
	return nil
}

// addBinder adds the binder (role binder); it wakes an in-process notifier when its
// checkpoint moves.
func (n *node) addBinder() error {
	if !n.cfg.has("binder") {
		return nil
	}
	b, err := notify.NewBinder(notify.BinderConfig{DSN: n.cfg.pgDSN, AMQPURL: n.cfg.amqpURL, Name: binderName, Logger: n.log,
		QueueOptions: topology.QueueOptions{Expiry: n.cfg.queueExpiry, MaxLength: n.cfg.queueMaxLength, Quorum: n.cfg.quorumQueues()},
		OnAdvanced:   n.notifierWake, Reader: n.reader(), Linger: n.followerLinger(n.cfg.inline && n.cfg.directPublish)}, n.store)
	if err != nil {
		return err
	}
	n.m.watchBinder(b)
	n.addFollower(b.Run, b.Healthy, b.Wake)
	return nil
}

// newService builds the command and query service over the store and the read models.
func (n *node) newService() (*service.Service, error) {
	c := service.DefaultConfig()
	c.CacheSize, c.Logger, c.GroupCommit = n.cfg.cacheSize, n.log.With("component", "service"), n.cfg.groupCommit
	c.Limits = n.cfg.limits // MaxEventBytes 0: the event store's record limit
	c.MaxCommitBatch = n.cfg.commitBatch
	c.OnAppend = func() {
		for _, w := range n.wake {
			w()
		}
	}
	if d := n.direct; d != nil {
		c.OnCommitted = func(ctx context.Context, ac service.AppendedCommit) {
			d.Publish(ctx, notify.Commit{EventID: ac.EventID, Event: ac.Event, Position: ac.Position,
				Prev: ac.Prev, MembersAt: ac.MembersAt, Inline: true})
		}
	}
	return service.New(c, n.store, n.reads(), itemids.NewPostgres(n.pool))
}

// addRPC adds the RPC server on ISyncService (role rpc).
func (n *node) addRPC(svc *service.Service) error {
	if !n.cfg.has("rpc") {
		return nil
	}
	cfg := n.cfg
	auth := rpc.AuthBroker
	if cfg.auth == "trust" {
		auth = rpc.AuthTrust
		n.log.Warn("auth=trust: identities are taken from request bodies unverified; use only for legacy clients on a closed network")
	}
	srv, err := rpc.NewServer(rpc.Config{
		URL: cfg.amqpURL, RequestQueue: cfg.requestQueue, Concurrency: cfg.concurrency, Prefetch: cfg.prefetch,
		RequestTimeout: cfg.requestTimeout, ShutdownTimeout: cfg.shutdownGrace, Auth: auth,
		QueueOptions: topology.QueueOptions{Expiry: cfg.queueExpiry, MaxLength: cfg.queueMaxLength, Quorum: cfg.quorumQueues()},
		Logger:       n.log, Metrics: n.m,
		MaxInFlightBytes: int64(cfg.maxInFlightBytes), MaxReplyBytes: cfg.maxReplyBytes,
		PerUserInFlight: cfg.perUserInFlight, PerUserQueued: cfg.perUserQueued, QueuedTotal: cfg.queuedTotal,
		PerUserBytes: int64(cfg.perUserBytes), ReplayBytes: int64(cfg.replayBytes), ReplayWindow: cfg.replayWindow,
		ChangesCacheBytes: int64(cfg.changesCache),
		// updateDevice answers once the binder bound the device's queue; a repeated
		// commit is republished only once the notifier published it the first time.
		Bound: n.binderAt, Published: n.notifierAt,
		Stages: n.stageTimer(),
	}, countingService{svc, n.m})
	if err != nil {
		return err
	}
	n.srv = srv
	n.ready = append(n.ready, func(context.Context) error {
		if !srv.Consuming() {
			return errors.New("not consuming requests (connecting to the broker)")
		}
		return nil
	})
	return nil
}

// stageTimer is rpc.Config.Stages: nil unless -commit-stages.
func (n *node) stageTimer() func(string, *stages.Trace) {
	if !n.cfg.commitStages {
		return nil
	}
	return n.m.stageTimer()
}

// serve runs every component until ctx ends or one fails. Shutdown is ordered: the RPC
// server stops consuming and finishes its in-flight requests first; only then do the
// followers (projectors, direct publisher, notifier, binder) stop, so that what the last
// requests appended is still projected and notified if time allows (what is not is
// picked up from the checkpoints at the next start).
func (n *node) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	followCtx, stopFollowers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollowers()
	rpcDone := make(chan struct{})
	if n.srv != nil {
		g.Go(func() error { defer close(rpcDone); return ignoreCanceled(n.srv.Run(gctx)) })
	} else {
		close(rpcDone)
	}
	g.Go(func() error {
		<-gctx.Done()
		<-rpcDone
		stopFollowers()
		return nil
	})
	for _, run := range n.followers {
		g.Go(func() error {
			err := run(followCtx)
			if followCtx.Err() != nil {
				return nil
			}
			return err // a follower failing on its own stops the process
		})
	}
	if n.http != nil {
		n.serveHTTP(g, followCtx)
	}
	n.greet()
	return g.Wait()
}

// serveHTTP serves /healthz, /readyz, /metrics (and /debug/pprof with -pprof) on the
// listener bound at start-up until done ends.
func (n *node) serveHTTP(g *errgroup.Group, done context.Context) {
	n.http.handOver(httpHandler(n.reg, n.ready, n.cfg.pprof))
	g.Go(func() error {
		if err := n.http.wait(); err != nil {
			return fmt.Errorf("http %s: %w", n.cfg.httpAddr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-done.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.http.shutdown(sctx)
	})
}

// greet logs the start and tells a person at the terminal what to do next.
func (n *node) greet() {
	cfg := n.cfg
	n.log.Info("syncd started", "roles", cfg.roles, "auth", cfg.auth, "database", redact(cfg.pgDSN), "broker", redactAMQP(cfg.amqpURL), "quorum_queues", cfg.quorumQueues(),
		"http", cfg.httpAddr, "pprof", cfg.pprof, "request_queue", cfg.requestQueue)
	fmt.Fprintf(os.Stderr, "\nsyncd is running. Next steps:\n"+
		"  add a user (prints their id, personal workspace and broker credentials):\n"+
		"    go run ./cmd/syncctl user add --name Alice --email alice@example.com\n"+
		"  health and metrics: curl http://%s/readyz  ·  curl http://%s/metrics\n"+
		"  stop with Ctrl-C (SIGTERM): in-flight requests finish first.\n\n", cfg.httpAddr, cfg.httpAddr)
}
