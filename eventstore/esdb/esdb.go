// Package esdb owns the EventStoreDB/KurrentDB backend of the eventstore contract, over
// the gRPC client github.com/EventStore/EventStore-Client-Go/v4/esdb. That client's
// package is also named esdb: inside this package, esdb.X always names the client's X
// (a package cannot qualify its own names).
//
// Mapping. A stream of the contract is the EventStoreDB stream Config.StreamPrefix+name;
// our version n is the server's stream revision n-1, so Exact(0)/NoStream map to
// esdb.NoStream{} and Exact(n) to esdb.Revision(n-1). A Position is the server's
// {commit, prepare} log position of an event. Records are stored with EventID = Record.ID,
// the type as the event type, Data as is (content type JSON when it is valid JSON, binary
// otherwise) and Metadata as the custom metadata bytes, unchanged.
//
// Idempotency. EventStoreDB deduplicates by event id within one stream only, guarantees it
// only for a non-Any expected revision, and does not say in its reply whether it
// deduplicated. So Append first reads the stream's tail (the batch plus
// Config.DedupWindow events) and looks for the batch's ids there: the whole batch in
// order is a duplicate and returns the original result with Duplicate set; some of the
// ids only is rejected with ErrInvalidAppend. An Exact retry whose slots lie further back
// is checked by reading those slots. An Any retry further back is left to the server's
// best-effort deduplication; when the server returns a revision below where a fresh write
// would land, the append is reported as a duplicate. Limits: two identical batches
// appended concurrently may both report Duplicate=false (one of them is deduplicated by
// the server); ids appended to another stream are not detected (the server has no index
// by event id).
//
// Global order. ReadAll and Subscribe return every event of the non-system streams that
// carry the prefix ('$' streams and '$' event types are never returned, so Append
// rejects '$' stream names and types). The $all log has no visibility gaps, so no event
// is ever held back.
//
// Cost and server settings. An append is three calls: the tail read, the append and a
// read of the last appended event (the append reply carries no event position). Records
// may be up to eventstore.MaxRecordSize (4 MiB) but the server refuses appends above its
// MaxAppendSize, 1 MiB by default: run it with KURRENTDB_MAX_APPEND_SIZE of 16 MiB, as
// docker-compose.yml does, or a refused append fails with ErrRecordTooLarge. ReadAll
// filters on the client (the v4 client has no server-side filter for reads), so with a
// prefix on a busy shared server it scans the other events too; Subscribe filters on the
// server. The v4 client's own connection is replaced when it dies (see conn).
//
// This package must never import the rest of the project, log through the global
// logger, or retry an append on its own (a timeout leaves the outcome unknown: the
// caller retries, and the idempotency above makes that safe).
package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Store is the EventStoreDB backend of eventstore.Store. It is safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	esCfg esdb.Configuration // parsed URL, copied for every client

	mu       sync.Mutex
	conn     *conn // current client
	closed   bool
	inflight sync.WaitGroup // operations and subscriptions in progress

	closeCtx    context.Context // cancelled by Close: aborts in-flight calls
	cancelClose context.CancelFunc
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to the server named by cfg.URL and checks that it can read $all.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	esCfg, err := esdb.ParseConnectionString(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("esdb open: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "esdbstore")}
	clientLog := s.log.With("source", "esdb-client")
	esCfg.Logger = func(level esdb.LogLevel, format string, args ...any) {
		// The client's "error" level includes routine events (a cancelled subscription,
		// a missing stream), so it is logged as a warning.
		lvl := slog.LevelDebug
		switch level {
		case esdb.LogError, esdb.LogWarn:
			lvl = slog.LevelWarn
		}
		if clientLog.Enabled(context.Background(), lvl) {
			clientLog.Log(context.Background(), lvl, fmt.Sprintf(format, args...))
		}
	}
	s.esCfg = *esCfg
	c, err := s.newConn()
	if err != nil {
		return nil, fmt.Errorf("esdb open: %w", err)
	}
	s.conn = c
	s.closeCtx, s.cancelClose = context.WithCancel(context.Background())

	// Probe: the last event of $all (needs read access to $all, which global reads need).
	probe := func() error {
		rs, err := callCtx(ctx, c, func() (*esdb.ReadStream, error) {
			return c.c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		}, (*esdb.ReadStream).Close)
		if err != nil {
			return err
		}
		defer rs.Close()
		if _, err := rs.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	if err := probe(); err != nil {
		s.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, fmt.Errorf("esdb open %s: %w", redactURL(cfg.URL), transientIf(err))
	}
	return s, nil
}

// begin registers an operation: it fails with ErrClosed after Close, and otherwise
// returns ctx cancelled also by Close, the current client and the function that ends
// the operation.
func (s *Store) begin(ctx context.Context) (context.Context, *conn, func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, nil, eventstore.ErrClosed
	}
	s.inflight.Add(1)
	c := s.conn
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closeCtx, cancel)
	return ctx, c, func() {
		stop()
		cancel()
		s.inflight.Done()
	}, nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close cancels in-flight operations and subscriptions, waits for them and closes the
// client. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.conn
	s.mu.Unlock()
	if s.cancelClose != nil {
		s.cancelClose()
	}
	s.inflight.Wait()
	// Calls abandoned on a cancelled context normally return at once; one blocked inside
	// the client would panic if the client were closed under it (see conn).
	drained := make(chan struct{})
	go func() {
		c.calls.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return c.c.Close()
	case <-time.After(closeDrainTimeout):
		s.log.Warn("esdb: client left open: calls into it never returned", "pending", c.pending.Load())
		return nil
	}
}

// closeDrainTimeout bounds how long Close waits for abandoned calls into the client.
const closeDrainTimeout = 5 * time.Second
