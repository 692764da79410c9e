// Package postgres owns the default eventstore.Store: events in PostgreSQL, through its
// own pgx pool and its own tables (es_streams, es_events, es_schema_version), created at
// Open from the numbered .sql files embedded under schema/.
//
// Appends to one stream serialise on a transaction-scoped advisory lock of the stream,
// taken before the append writes anything (so before its transaction has an id), and on
// the stream's row lock, taken by the append's statement; both are held until commit. So
// stream versions are gap-free and in commit order, and within a stream transaction ids
// increase with versions; appends to different streams run in parallel. There is never a
// global lock. Every event row carries its transaction id (xid8); global readers
// (ReadAll, Subscribe) read only rows below pg_snapshot_xmin(pg_current_snapshot()),
// ordered by (tx_id, global_pos), so a reader that resumes from the last position it saw
// never skips an event that commits late, and sees each stream's events in version
// order. Position is {Commit: tx_id, Prepare: global_pos}.
//
// The package must never import the rest of the project, never take a global lock, never
// turn synchronous_commit off, and never send notifications inside an append
// transaction.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Defaults of Config.
const (
	DefaultMaxConns     = 16
	DefaultPollInterval = 200 * time.Millisecond
	// idleInTxTimeout is set on every pooled connection so that a leaked transaction
	// cannot hold the global-read horizon back for longer.
	idleInTxTimeout = "60s"
)

// Config configures a Store.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value form). Required.
	DSN string
	// MaxConns is the size of the store's connection pool. Default DefaultMaxConns (16).
	MaxConns int32
	// PollInterval is how often an idle Subscribe polls for new events. While events
	// are arriving it polls up to ten times faster (at least every 20ms), and appends
	// through this same Store wake it at once. Default DefaultPollInterval (200ms).
	PollInterval time.Duration
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Inline, if set, is called for every append to queue further statements into b
	// that run in the append's own transaction: read models kept in the same
	// transaction as the events (an inline projection). recs are the append's records
	// with the stream versions they take; their Position and RecordedAt are not known
	// to the hook (zero); their Value is the appender's Record.Value. The statements run in order after the append and before its
	// commit; if one fails, or Inline returns an error, nothing of the append is
	// written and the append fails with that error. They never apply records that were
	// not stored: an append that writes nothing (wrong expected version, a repeated
	// record id) aborts before them, or (expected version Any, whose versions are known
	// only once it ran) the hook is called only after the append wrote its records.
	// When every append of a transaction names the version it expects (Exact,
	// NoStream), the hook is called before anything is sent and its statements go in
	// the same round trip as the append: one round trip per append (or group commit).
	Inline func(recs []eventstore.RecordedEvent, b *pgx.Batch) error
}

// DefaultConfig returns the defaults; DSN is left to the caller.
func DefaultConfig() Config {
	return Config{MaxConns: DefaultMaxConns, PollInterval: DefaultPollInterval, Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks cfg (a zero field stands for its default); it changes nothing.
func (cfg Config) Validate() error {
	if cfg.DSN == "" {
		return errors.New("postgres store config: DSN is required")
	}
	if _, err := pgxpool.ParseConfig(cfg.DSN); err != nil {
		return fmt.Errorf("postgres store config: parse DSN: %w", err)
	}
	if cfg.MaxConns < 0 {
		return fmt.Errorf("postgres store config: MaxConns %d is negative", cfg.MaxConns)
	}
	if cfg.PollInterval < 0 {
		return fmt.Errorf("postgres store config: PollInterval %v is negative", cfg.PollInterval)
	}
	return nil
}

// withDefaults returns cfg with every zero field set from DefaultConfig.
func (cfg Config) withDefaults() Config {
	d := DefaultConfig()
	if cfg.MaxConns == 0 {
		cfg.MaxConns = d.MaxConns
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = d.PollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = d.Logger
	}
	return cfg
}

// Store is the PostgreSQL eventstore.Store. It is safe for concurrent use.
type Store struct {
	cfg  Config
	log  *slog.Logger
	pool *pgxpool.Pool

	closed   atomic.Bool
	mu       sync.Mutex
	subs     sync.WaitGroup     // running Subscribe calls; Close waits for them
	closing  chan struct{}      // closed by Close; stops subscriptions
	wake     chan struct{}      // closed and replaced after every append through this Store
	closeErr func() (err error) // runs once
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to PostgreSQL, applies the embedded schema (under an advisory lock, so
// concurrent Opens are safe) and returns the store, which owns its pool until Close.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: parse DSN: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	rp := pcfg.ConnConfig.RuntimeParams
	rp["idle_in_transaction_session_timeout"] = idleInTxTimeout
	// The store's statements are short index scans. The byte-bounded global read's
	// estimated cost grows with the table (its join is estimated at a fraction of the
	// rows), and past about a million events it crossed the JIT thresholds: ~0.4 s of
	// compilation for a 15 ms read of 5,000 events, on every page of a rebuild or
	// projector catch-up. A DSN that sets jit keeps its own value.
	if rp["jit"] == "" {
		rp["jit"] = "off"
	}
	if rp["application_name"] == "" {
		rp["application_name"] = "syncservice-eventstore"
	}
	pcfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error { registerUUIDOnConnect(c); return nil }
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: ping %s: %w", pcfg.ConnConfig.Host, classify(ctx, err))
	}
	if err := migrate(ctx, pool, cfg.Logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger,
		pool:    pool,
		closing: make(chan struct{}),
		wake:    make(chan struct{}),
	}
	s.closeErr = sync.OnceValue(func() error {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.closing)
		s.mu.Unlock()
		s.subs.Wait()
		s.pool.Close()
		return nil
	})
	return s, nil
}

// Close stops running subscriptions (they return ErrClosed), waits for them, then
// closes the pool, which waits for in-flight calls to release their connections. A
// subscription handler must therefore honour its ctx, and a HoldOpenAppend must be
// committed first. Close is idempotent.
func (s *Store) Close() error { return s.closeErr() }

// begin reports ErrClosed once Close has started.
func (s *Store) begin(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	return nil
}

// notifyAppended wakes this Store's subscriptions after a commit.
func (s *Store) notifyAppended() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *Store) wakeChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}
