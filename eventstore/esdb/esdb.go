// Package esdbstore owns the EventStoreDB/KurrentDB backend of the eventstore contract,
// over the gRPC client github.com/EventStore/EventStore-Client-Go/v4/esdb (the package is
// named esdbstore so that it does not clash with the client's package esdb).
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
package esdbstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Config configures Open.
type Config struct {
	// URL is the EventStoreDB connection string, e.g. esdb://localhost:2113?tls=false.
	// Required. TLS is on unless the URL says tls=false.
	URL string
	// Logger receives the store's and the gRPC client's logs. Default: discard.
	Logger *slog.Logger
	// StreamPrefix namespaces every stream: stream s is stored as StreamPrefix+s, and
	// ReadAll and Subscribe return only events of streams with the prefix, so that several
	// deployments (or test runs) can share one server. Default "" (every non-system
	// stream). Must not start with '$'.
	StreamPrefix string
	// DedupWindow is how many events before the batch's own slots Append reads to detect
	// retried or overlapping batches. Default 16; negative is invalid.
	DedupWindow int
	// ReadPage is how many $all events one ReadAll request scans at most before
	// filtering. Default 1024.
	ReadPage int
	// SubscribeBatch bounds the events passed to one Subscribe handler call. Default 256.
	SubscribeBatch int
	// ResubscribeBackoff is the first pause before resubscribing after the subscription
	// dropped; it doubles up to ResubscribeMaxBackoff. Defaults 100ms and 5s.
	ResubscribeBackoff    time.Duration
	ResubscribeMaxBackoff time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 16
	}
	if c.ReadPage == 0 {
		c.ReadPage = 1024
	}
	if c.SubscribeBatch == 0 {
		c.SubscribeBatch = 256
	}
	if c.ResubscribeBackoff == 0 {
		c.ResubscribeBackoff = 100 * time.Millisecond
	}
	if c.ResubscribeMaxBackoff == 0 {
		c.ResubscribeMaxBackoff = 5 * time.Second
	}
}

// Validate reports a configuration Open would refuse. Zero values take their defaults.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("esdb config: URL is required")
	}
	if _, err := esdb.ParseConnectionString(c.URL); err != nil {
		return fmt.Errorf("esdb config: URL: %w", err)
	}
	if strings.HasPrefix(c.StreamPrefix, "$") {
		return fmt.Errorf("esdb config: StreamPrefix %q starts with '$' (reserved for system streams)", c.StreamPrefix)
	}
	if c.DedupWindow < 0 || c.ReadPage < 0 || c.SubscribeBatch < 0 || c.ResubscribeBackoff < 0 || c.ResubscribeMaxBackoff < 0 {
		return errors.New("esdb config: DedupWindow, ReadPage, SubscribeBatch and the backoffs must not be negative")
	}
	if c.ReadPage == 1 {
		return errors.New("esdb config: ReadPage must be at least 2")
	}
	return nil
}

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

// conn is one esdb.Client and the count of calls into it that have not returned.
//
// The v4 client has two traps this type exists for: after a failed node discovery its
// connection goroutine exits for good (every later call fails with
// ErrorCodeConnectionClosed), and a call made while discovery runs can block forever on
// an unbuffered channel, ignoring its context — closing the client then panics that
// call ("send on closed channel"). So calls run in a goroutine that the caller can
// abandon on ctx (callCtx), a dead client is replaced (renew), and a client is closed
// only when no call into it is pending.
type conn struct {
	c       *esdb.Client
	pending atomic.Int64   // calls not returned yet
	calls   sync.WaitGroup // the same calls, to wait for
}

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

func (s *Store) newConn() (*conn, error) {
	cfg := s.esCfg
	c, err := esdb.NewClient(&cfg)
	if err != nil {
		return nil, err
	}
	return &conn{c: c}, nil
}

// redactURL drops credentials from a connection string for error messages.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
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

// renew replaces c, whose connection goroutine has exited, by a new client. The dead
// client is not closed: a call may still be blocked on its channel (see conn).
func (s *Store) renew(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.conn != c {
		return
	}
	n, err := s.newConn()
	if err != nil {
		s.log.Error("esdb: cannot create a new client", "err", err)
		return
	}
	s.log.Warn("esdb: client connection closed; replaced it by a new client")
	s.conn = n
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

// callCtx runs fn, a call into c, and returns its result, or ctx's error as soon as ctx
// ends. An abandoned call keeps running; release frees its result if it succeeds later.
func callCtx[T any](ctx context.Context, c *conn, fn func() (T, error), release func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	c.pending.Add(1)
	c.calls.Add(1)
	go func() {
		v, err := fn()
		c.pending.Add(-1)
		c.calls.Done()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && release != nil {
				release(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

// classify turns an error of a call made with the operation context ctx (from begin)
// into the contract's errors: ErrClosed when Close interrupted it, the caller's context
// error, TransientError for transport failures and timeouts, err itself otherwise.
func (s *Store) classify(ctx context.Context, c *conn, err error) error {
	if err == nil {
		return nil
	}
	if s.isClosed() {
		return fmt.Errorf("%w (%v)", eventstore.ErrClosed, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if errors.Is(cerr, context.DeadlineExceeded) {
			return eventstore.TransientError(err)
		}
		return err
	}
	var ee *esdb.Error
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeConnectionClosed) {
		s.renew(c)
		return eventstore.TransientError(err)
	}
	return transientIf(err)
}

// transientIf wraps err as transient when it is a transport failure or a timeout.
func transientIf(err error) error {
	var ee *esdb.Error
	if errors.As(err, &ee) {
		switch ee.Code() {
		case esdb.ErrorCodeDeadlineExceeded, esdb.ErrorUnavailable, esdb.ErrorAborted,
			esdb.ErrorCodeNotLeader, esdb.ErrorCodeConnectionClosed:
			return eventstore.TransientError(err)
		}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return eventstore.TransientError(err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return eventstore.TransientError(err)
	}
	return err
}

func isCode(err error, code esdb.ErrorCode) bool {
	var ee *esdb.Error
	return errors.As(err, &ee) && ee.IsErrorCode(code)
}

// ---- reading ----

// readEvents drains a read, returning its events in the order read; a stream that does
// not exist reads as empty.
func readEvents(ctx context.Context, c *conn, open func() (*esdb.ReadStream, error)) ([]*esdb.RecordedEvent, error) {
	rs, err := callCtx(ctx, c, open, (*esdb.ReadStream).Close)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if isCode(err, esdb.ErrorCodeResourceNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev.OriginalEvent())
	}
}

// tail returns up to count of the stream's last events, oldest first, and the revision
// of its last event (-1: no stream).
func (s *Store) tail(ctx context.Context, c *conn, full string, count int) ([]*esdb.RecordedEvent, int64, error) {
	evs, err := readEvents(ctx, c, func() (*esdb.ReadStream, error) {
		return c.c.ReadStream(ctx, full, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, uint64(count))
	})
	if err != nil || len(evs) == 0 {
		return nil, -1, err
	}
	last := int64(evs[0].EventNumber)
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs, last, nil
}

// slots reads count events of the stream from revision rev on.
func (s *Store) slots(ctx context.Context, c *conn, full string, rev uint64, count int) ([]*esdb.RecordedEvent, error) {
	return readEvents(ctx, c, func() (*esdb.ReadStream, error) {
		return c.c.ReadStream(ctx, full, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(rev)}, uint64(count))
	})
}

func (s *Store) convert(e *esdb.RecordedEvent) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID:            e.EventID,
		Stream:        strings.TrimPrefix(e.StreamID, s.cfg.StreamPrefix),
		StreamVersion: e.EventNumber + 1,
		Type:          e.EventType,
		Data:          e.Data,
		Metadata:      e.UserMetadata,
		Position:      eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		RecordedAt:    e.CreatedDate,
	}
}

// ours reports whether an event of $all belongs to this store's global order.
func (s *Store) ours(e *esdb.RecordedEvent) bool {
	return e != nil && !strings.HasPrefix(e.StreamID, "$") && !strings.HasPrefix(e.EventType, "$") &&
		strings.HasPrefix(e.StreamID, s.cfg.StreamPrefix)
}

func allPosition(p eventstore.Position) esdb.AllPosition {
	if p.IsZero() {
		return esdb.Start{}
	}
	return esdb.Position{Commit: p.Commit, Prepare: p.Prepare}
}

func position(p esdb.Position) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// ReadStream returns up to limit events of stream with version >= from, oldest first.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("esdb: read stream %s: %w", stream, err)
	}
	defer done()
	full := s.cfg.StreamPrefix + stream
	if limit <= 0 || full == "" {
		return nil, nil
	}
	if from == 0 {
		from = 1
	}
	evs, err := s.slots(ctx, c, full, from-1, limit)
	if err != nil {
		return nil, fmt.Errorf("esdb: read stream %s from %d: %w", stream, from, s.classify(ctx, c, err))
	}
	out := make([]eventstore.RecordedEvent, len(evs))
	for i, e := range evs {
		out[i] = s.convert(e)
	}
	return out, nil
}

// StreamVersion returns the version of the stream's last event, 0 if it has none.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("esdb: stream version %s: %w", stream, err)
	}
	defer done()
	full := s.cfg.StreamPrefix + stream
	if full == "" {
		return 0, nil
	}
	_, last, err := s.tail(ctx, c, full, 1)
	if err != nil {
		return 0, fmt.Errorf("esdb: stream version %s: %w", stream, s.classify(ctx, c, err))
	}
	return uint64(last + 1), nil
}

// ReadAll returns up to limit events strictly after from in the global order. The
// server's ReadAll includes the event at its start position, so that one is skipped;
// system events and other prefixes' streams are filtered here, scanning ReadPage events
// per request.
func (s *Store) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("esdb: read all from %s: %w", from, err)
	}
	defer done()
	if limit <= 0 {
		return nil, nil
	}
	out, err := s.readAll(ctx, c, from, limit)
	if err != nil {
		return nil, fmt.Errorf("esdb: read all from %s: %w", from, s.classify(ctx, c, err))
	}
	return out, nil
}

func (s *Store) readAll(ctx context.Context, c *conn, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	after := from
	page := s.cfg.ReadPage
	for {
		rs, err := callCtx(ctx, c, func() (*esdb.ReadStream, error) {
			return c.c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Forwards, From: allPosition(after)}, uint64(page))
		}, (*esdb.ReadStream).Close)
		if err != nil {
			return nil, err
		}
		scanned := 0
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rs.Close()
				return nil, err
			}
			scanned++
			e := ev.OriginalEvent()
			if e == nil {
				continue
			}
			p := position(e.Position)
			if !after.Less(p) {
				continue // the start position itself (ReadAll's From is inclusive)
			}
			after = p
			if !s.ours(e) {
				continue
			}
			out = append(out, s.convert(e))
			if len(out) == limit {
				rs.Close()
				return out, nil
			}
		}
		rs.Close()
		if scanned < page {
			return out, nil // reached the end of $all
		}
	}
}

// ---- appending ----

// Append writes records atomically at the end of stream if expected holds; see the
// package comment for how retried batches are recognised.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, records ...eventstore.Record) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, records); err != nil {
		return eventstore.AppendResult{}, err
	}
	if strings.HasPrefix(s.cfg.StreamPrefix+stream, "$") {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream %q starts with '$' (EventStoreDB system stream)", eventstore.ErrInvalidAppend, stream)
	}
	for i, r := range records {
		if strings.HasPrefix(r.Type, "$") {
			return eventstore.AppendResult{}, fmt.Errorf("%w: record %d has type %q, starting with '$' (EventStoreDB system event)", eventstore.ErrInvalidAppend, i, r.Type)
		}
	}
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %s: %w", stream, err)
	}
	defer done()
	res, err := s.append(ctx, c, stream, expected, records)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append %d records to %s (expected %s): %w", len(records), stream, expected, err)
	}
	return res, nil
}

func (s *Store) append(ctx context.Context, c *conn, stream string, expected eventstore.ExpectedVersion, records []eventstore.Record) (eventstore.AppendResult, error) {
	full := s.cfg.StreamPrefix + stream
	n := len(records)
	wantV, exact := expected.Version() // exact: NoStream or Exact

	tail, last, err := s.tail(ctx, c, full, n+s.cfg.DedupWindow)
	if err != nil {
		return eventstore.AppendResult{}, s.classify(ctx, c, err)
	}
	cur := uint64(last + 1) // the stream's version

	// A retried or overlapping batch near the tail.
	if res, found, err := s.checkBatch(ctx, c, full, tail, records); err != nil || found {
		return res, err
	}
	if exact && cur != wantV {
		// The batch's slots may hold it from an earlier append beyond the window.
		if cur > wantV && (len(tail) == 0 || tail[0].EventNumber > wantV) {
			evs, err := s.slots(ctx, c, full, wantV, n)
			if err != nil {
				return eventstore.AppendResult{}, s.classify(ctx, c, err)
			}
			if res, found, err := s.checkBatch(ctx, c, full, evs, records); err != nil || found {
				return res, err
			}
		}
		return eventstore.AppendResult{}, &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: cur}
	}

	var rev esdb.ExpectedRevision = esdb.Any{}
	if exact {
		if wantV == 0 {
			rev = esdb.NoStream{}
		} else {
			rev = esdb.Revision(wantV - 1)
		}
	}
	evs := make([]esdb.EventData, n)
	for i, r := range records {
		ct := esdb.ContentTypeBinary
		if json.Valid(r.Data) {
			ct = esdb.ContentTypeJson
		}
		evs[i] = esdb.EventData{EventID: r.ID, EventType: r.Type, ContentType: ct, Data: r.Data, Metadata: r.Metadata}
	}
	wr, err := callCtx(ctx, c, func() (*esdb.WriteResult, error) {
		return c.c.AppendToStream(ctx, full, esdb.AppendToStreamOptions{ExpectedRevision: rev}, evs...)
	}, nil)
	if err != nil {
		return eventstore.AppendResult{}, s.appendError(ctx, c, stream, full, expected, err)
	}

	// The reply's positions are not the event's own ({commit, commit} of the write), so
	// read the last event back for its position; this also checks the reply.
	lastRev := wr.NextExpectedVersion
	got, err := s.slots(ctx, c, full, lastRev, 1)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("appended, reading back revision %d: %w", lastRev, s.classify(ctx, c, err))
	}
	if len(got) != 1 || got[0].EventID != records[n-1].ID {
		return eventstore.AppendResult{}, fmt.Errorf("appended, but revision %d of %s does not hold record %s", lastRev, full, records[n-1].ID)
	}
	return eventstore.AppendResult{
		StreamVersion: lastRev + 1,
		Position:      position(got[0].Position),
		// With Any, a fresh write lands after the tail read above; a lower revision is
		// the server's deduplication of an earlier write of the same ids.
		Duplicate: !exact && int64(lastRev) < last+int64(n),
	}, nil
}

// checkBatch looks for records' ids among evs (consecutive events of the stream, oldest
// first). The whole batch, in order, at consecutive revisions is a duplicate: it
// returns the original result. Some of the ids only is an overlap: ErrInvalidAppend. A
// batch that starts before evs is checked by reading its slots.
func (s *Store) checkBatch(ctx context.Context, c *conn, full string, evs []*esdb.RecordedEvent, records []eventstore.Record) (eventstore.AppendResult, bool, error) {
	idx := make(map[uuid.UUID]int, len(records))
	for i, r := range records {
		idx[r.ID] = i
	}
	for i, e := range evs {
		j, ok := idx[e.EventID]
		if !ok {
			continue
		}
		// e holds records[j]: the batch would start at revision e.EventNumber-j.
		if uint64(j) > e.EventNumber {
			return overlap(records[j].ID)
		}
		start := e.EventNumber - uint64(j)
		var run []*esdb.RecordedEvent
		if first := i - j; first >= 0 && first+len(records) <= len(evs) {
			run = evs[first : first+len(records)] // the batch's slots are all in evs
		} else {
			var err error
			if run, err = s.slots(ctx, c, full, start, len(records)); err != nil {
				return eventstore.AppendResult{}, false, s.classify(ctx, c, err)
			}
		}
		if len(run) != len(records) {
			return overlap(records[j].ID)
		}
		for k, r := range records {
			if run[k].EventID != r.ID {
				return overlap(records[j].ID)
			}
		}
		lastEv := run[len(run)-1]
		return eventstore.AppendResult{
			StreamVersion: lastEv.EventNumber + 1,
			Position:      position(lastEv.Position),
			Duplicate:     true,
		}, true, nil
	}
	return eventstore.AppendResult{}, false, nil
}

func overlap(id uuid.UUID) (eventstore.AppendResult, bool, error) {
	return eventstore.AppendResult{}, false, fmt.Errorf("%w: record %s was appended before in another batch", eventstore.ErrInvalidAppend, id)
}

// appendError maps a failed AppendToStream. WrongExpectedVersion carries the actual
// revision only in its message, so the version is read.
func (s *Store) appendError(ctx context.Context, c *conn, stream, full string, expected eventstore.ExpectedVersion, err error) error {
	var ee *esdb.Error
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeWrongExpectedVersion) {
		if expected.IsAny() {
			// With Any the server reports a batch whose first ids it recently wrote but
			// whose later ones it did not ("corrupted idempotency") this way.
			return fmt.Errorf("%w: some of the records were appended before in another batch: %w", eventstore.ErrInvalidAppend, err)
		}
		_, last, rerr := s.tail(ctx, c, full, 1)
		if rerr != nil {
			return fmt.Errorf("wrong expected version, then reading the version: %w", s.classify(ctx, c, rerr))
		}
		return &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: uint64(last + 1)}
	}
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeStreamDeleted) {
		return fmt.Errorf("%w: stream is deleted: %w", eventstore.ErrInvalidAppend, err)
	}
	if status.Code(err) == codes.InvalidArgument {
		return fmt.Errorf("%w: the server refused the append (its MaxAppendSize, 1 MiB by default, is below the batch?): %w", eventstore.ErrRecordTooLarge, err)
	}
	return s.classify(ctx, c, err)
}

// ---- subscribing ----

// Subscribe follows the global order after from with a catch-up SubscribeToAll,
// filtered on the server, calling handle with batches of the events that arrived
// together. A dropped subscription is resumed from the last delivered event after a
// backoff. It returns ctx.Err() when ctx ends, ErrClosed when the store is closed, and
// handle's error as is.
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, handle func(ctx context.Context, batch []eventstore.RecordedEvent) error) error {
	caller := ctx
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("esdb: subscribe from %s: %w", from, err)
	}
	defer done()
	if err := caller.Err(); err != nil {
		return err
	}
	filter := esdb.ExcludeSystemEventsFilter()
	if s.cfg.StreamPrefix != "" {
		filter = &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.cfg.StreamPrefix}}
	}
	after := from
	backoff := s.cfg.ResubscribeBackoff
	for {
		delivered, err := s.follow(ctx, c, &after, filter, handle)
		if err == nil {
			err = errors.New("subscription ended")
		}
		if delivered {
			backoff = s.cfg.ResubscribeBackoff
		}
		var herr handlerError
		if errors.As(err, &herr) {
			return herr.err
		}
		if s.isClosed() {
			return fmt.Errorf("esdb: subscribe: %w", eventstore.ErrClosed)
		}
		if cerr := caller.Err(); cerr != nil {
			return cerr
		}
		cerr := s.classify(ctx, c, err)
		if isCode(err, esdb.ErrorCodeAccessDenied) || isCode(err, esdb.ErrorCodeUnauthenticated) || isCode(err, esdb.ErrorCodeUnsupportedFeature) {
			return fmt.Errorf("esdb: subscribe from %s: %w", after, cerr)
		}
		s.log.Warn("esdb: subscription dropped; resubscribing", "after", after.String(), "backoff", backoff, "err", cerr)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if s.isClosed() {
				return fmt.Errorf("esdb: subscribe: %w", eventstore.ErrClosed)
			}
			return caller.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.ResubscribeMaxBackoff)
		s.mu.Lock()
		c = s.conn // renew may have replaced a dead client
		s.mu.Unlock()
	}
}

// handlerError marks the handler's own error, which ends Subscribe.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// follow runs one subscription from *after until it drops (returning why), ctx ends or
// handle fails (returning handlerError). It advances *after past every delivered event
// and reports whether it delivered any.
func (s *Store) follow(ctx context.Context, c *conn, after *eventstore.Position, filter *esdb.SubscriptionFilter,
	handle func(context.Context, []eventstore.RecordedEvent) error) (bool, error) {
	// fctx ends this subscription's reader, whichever way follow returns.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	sub, err := callCtx(fctx, c, func() (*esdb.Subscription, error) {
		return c.c.SubscribeToAll(fctx, esdb.SubscribeToAllOptions{From: allPosition(*after), Filter: filter})
	}, func(sub *esdb.Subscription) { sub.Close() })
	if err != nil {
		return false, err
	}
	// A reader goroutine turns Recv into a channel so that events already received can
	// be batched without blocking.
	events := make(chan *esdb.RecordedEvent, s.cfg.SubscribeBatch)
	var dropErr error
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(events)
		for {
			ev := sub.Recv()
			switch {
			case ev.SubscriptionDropped != nil:
				dropErr = ev.SubscriptionDropped.Error
				if dropErr == nil {
					dropErr = errors.New("subscription dropped")
				}
				return
			case ev.EventAppeared != nil:
				select {
				case events <- ev.EventAppeared.OriginalEvent():
				case <-fctx.Done():
					return
				}
			}
		}
	}()
	stop := func() {
		fcancel()
		sub.Close()
		<-readerDone
	}
	delivered := false
	for {
		var first *esdb.RecordedEvent
		var ok bool
		select {
		case first, ok = <-events:
		case <-ctx.Done():
			stop()
			return delivered, ctx.Err()
		}
		if !ok {
			stop()
			return delivered, dropErr
		}
		raw := []*esdb.RecordedEvent{first}
	drain:
		for len(raw) < s.cfg.SubscribeBatch {
			select {
			case e, ok := <-events:
				if !ok {
					break drain
				}
				raw = append(raw, e)
			default:
				break drain
			}
		}
		batch := make([]eventstore.RecordedEvent, 0, len(raw))
		for _, e := range raw {
			if e == nil {
				continue
			}
			p := position(e.Position)
			if !after.Less(p) {
				continue // at or before the resume point
			}
			*after = p
			if s.ours(e) {
				batch = append(batch, s.convert(e))
			}
		}
		if len(batch) == 0 {
			continue
		}
		if err := handle(ctx, batch); err != nil {
			stop()
			return delivered, handlerError{err}
		}
		delivered = true
	}
}
