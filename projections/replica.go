package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/changeset"
)

// Replica answers the service's reads from the read models like Queries, sending the
// heavy ones (Changes, EncodedChanges, ChangesSince, ItemVersions, WorkspacesOf) to a
// hot standby of the primary when that keeps PROTOCOL.md §5's rule: a read reflects
// every commit notified before it arrived. Such a commit was committed before the read
// arrived, so its WAL lies before the primary's insert position read after the read
// arrived (the fence); the read goes to the standby only once the standby has replayed
// up to the fence, waiting at most MaxWait, and to the primary otherwise. The cheap
// reads (membership, getChanges' stamp, accounts, usage) stay on the primary.
//
// The fence costs one small query on the primary per read, shared by the reads that
// arrive while it is in flight, and the standby's replay position is polled by one
// query at a time for every waiting read. Replica never writes to the standby.
type Replica struct {
	*Queries // the primary: every read Replica does not route
	standby  *Queries
	cfg      ReplicaConfig
	log      *slog.Logger

	fence  coalescer[uint64]      // the primary's insert position, as a replay target
	replay coalescer[replayState] // the standby's replay position
	// replayed is the highest replay position seen (replay only moves forward).
	replayed atomic.Uint64
	// downUntil (unix nanoseconds) skips the standby for a while after it failed.
	downUntil atomic.Int64
	walBlock  atomic.Uint64 // the primary's wal_block_size, once read
	walSeg    atomic.Uint64 // and its wal_segment_size

	served   [whereCount]atomic.Int64
	lagBytes atomic.Int64 // fence minus replay at the last routed read (0: caught up)
	waitNs   atomic.Int64 // time routed reads spent waiting for the standby, in total
}

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Primary is the primary's pool (the one appends write to), Standby a hot standby's
	// (one server: the replay position must be the one of the server the read runs on).
	// Both required.
	Primary, Standby *pgxpool.Pool
	// MaxWait bounds how long a read waits for the standby to replay up to its fence
	// before it is read from the primary. Default DefaultReplicaMaxWait.
	MaxWait time.Duration
	// Poll is the least time between two reads of the standby's replay position while
	// reads wait. Default 1ms.
	Poll time.Duration
	// Retry is how long the standby is left alone after it failed (reads go to the
	// primary meanwhile). Default 1s.
	Retry time.Duration
	// Logger receives the switches between standby and primary. Default: discard.
	Logger *slog.Logger
}

// DefaultReplicaMaxWait is ReplicaConfig.MaxWait's default: above the usual replay lag
// of a synchronous standby (a few milliseconds) and the primary's WAL writer interval
// (wal_writer_delay, 200ms: WAL of transactions still open is written out at that pace).
const DefaultReplicaMaxWait = 250 * time.Millisecond

// Where a routed read was served.
type Where int

const (
	// ServedStandby: by the standby, once it had replayed the read's fence.
	ServedStandby Where = iota
	// ServedPrimary: by the primary because the standby is not one any more (it was
	// promoted: it is the primary, or a server about to be fenced off).
	ServedPrimary
	// ServedFallback: by the primary because the standby did not reach the fence within
	// MaxWait, or failed.
	ServedFallback
	whereCount
)

func (w Where) String() string {
	return [...]string{"standby", "primary", "fallback"}[w]
}

// ReplicaStats are a Replica's counters.
type ReplicaStats struct {
	Served   [whereCount]int64 // routed reads, by Where
	LagBytes int64             // WAL bytes the standby was behind the last routed read's fence
	Waited   time.Duration     // total time routed reads waited for the standby
}

type replayState struct {
	standby bool   // pg_is_in_recovery()
	lsn     uint64 // pg_last_wal_replay_lsn()
}

// NewReplica returns a Replica over primary and standby; q's settings (result and page
// sizes) apply to both.
func NewReplica(cfg ReplicaConfig, q *Queries) (*Replica, error) {
	if cfg.Primary == nil || cfg.Standby == nil {
		return nil, errors.New("replica config: Primary and Standby are required")
	}
	if cfg.MaxWait < 0 || cfg.Poll < 0 || cfg.Retry < 0 {
		return nil, errors.New("replica config: MaxWait, Poll and Retry must not be negative")
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultReplicaMaxWait
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Millisecond
	}
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sq := *q
	sq.pool = cfg.Standby
	r := &Replica{Queries: q, standby: &sq, cfg: cfg, log: cfg.Logger}
	r.fence = coalescer[uint64]{fetch: r.primaryPosition, timeout: 5 * time.Second}
	r.replay = coalescer[replayState]{fetch: r.standbyPosition, timeout: 2 * time.Second, gap: cfg.Poll}
	return r, nil
}

// Close waits for the position queries in flight; the pools stay the caller's.
func (r *Replica) Close() {
	r.fence.wait()
	r.replay.wait()
}

// Stats returns the counters.
func (r *Replica) Stats() ReplicaStats {
	var s ReplicaStats
	for i := range s.Served {
		s.Served[i] = r.served[i].Load()
	}
	s.LagBytes = r.lagBytes.Load()
	s.Waited = time.Duration(r.waitNs.Load())
	return s
}

// primaryPosition reads the primary's WAL insert position as a replay target.
func (r *Replica) primaryPosition(ctx context.Context) (uint64, error) {
	if r.walBlock.Load() == 0 {
		var blk, seg int64
		if err := r.Queries.pool.QueryRow(ctx, `SELECT current_setting('wal_block_size')::int8,
			(SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size')`).Scan(&blk, &seg); err != nil {
			return 0, fmt.Errorf("read the primary's WAL settings: %w", err)
		}
		r.walSeg.Store(uint64(seg))
		r.walBlock.Store(uint64(blk))
	}
	var lsn int64
	if err := r.Queries.pool.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0')::int8`).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("read the primary's WAL position: %w", err)
	}
	return replayTarget(uint64(lsn), r.walBlock.Load(), r.walSeg.Load()), nil
}

// standbyPosition reads whether the standby is one and how far it has replayed.
func (r *Replica) standbyPosition(ctx context.Context) (replayState, error) {
	var s replayState
	var lsn int64
	if err := r.standby.pool.QueryRow(ctx,
		`SELECT pg_is_in_recovery(), COALESCE((pg_last_wal_replay_lsn() - '0/0')::int8, 0)`).Scan(&s.standby, &lsn); err != nil {
		return s, fmt.Errorf("read the standby's replay position: %w", err)
	}
	s.lsn = uint64(lsn)
	return s, nil
}

// route picks the server of one read that arrived now.
func (r *Replica) route(ctx context.Context) (*Queries, Where, error) {
	if time.Now().UnixNano() < r.downUntil.Load() {
		return r.Queries, ServedFallback, nil
	}
	fence, err := r.fence.get(ctx, true)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		// The primary did not answer: the read goes there and fails or succeeds as
		// any other read of it does.
		return r.Queries, ServedFallback, nil
	}
	start := time.Now()
	deadline := start.Add(r.cfg.MaxWait)
	defer func() { r.waitNs.Add(int64(time.Since(start))) }()
	for {
		if at := r.replayed.Load(); at >= fence {
			r.lagBytes.Store(0)
			return r.standby, ServedStandby, nil
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		st, err := r.replay.get(wctx, false)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil, 0, ctx.Err()
		case err != nil && time.Now().Before(deadline):
			r.standbyFailed(err)
			return r.Queries, ServedFallback, nil
		case err != nil: // not replayed within MaxWait
			if at := r.replayed.Load(); at < fence {
				r.lagBytes.Store(int64(fence - at))
			}
			return r.Queries, ServedFallback, nil
		case !st.standby:
			return r.Queries, ServedPrimary, nil
		}
		for at := r.replayed.Load(); st.lsn > at && !r.replayed.CompareAndSwap(at, st.lsn); at = r.replayed.Load() {
		}
	}
}

// standbyFailed leaves the standby alone for Retry.
func (r *Replica) standbyFailed(err error) {
	if r.downUntil.Swap(time.Now().Add(r.cfg.Retry).UnixNano()) < time.Now().UnixNano() {
		r.log.Warn("standby failed; reading the primary for a while", "retry_in", r.cfg.Retry, "err", err)
	}
}

// routed runs q on the server route picks; a read the standby fails transiently (a lost
// connection, a query cancelled by a conflict with recovery) is run on the primary.
func routed[T any](ctx context.Context, r *Replica, q func(*Queries) (T, error)) (T, error) {
	on, where, err := r.route(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	if where == ServedStandby {
		v, err := q(on)
		if err == nil || !transientRead(err) || ctx.Err() != nil {
			if err == nil {
				r.served[ServedStandby].Add(1)
			}
			return v, err
		}
		r.standbyFailed(err)
		on, where = r.Queries, ServedFallback
	}
	v, err := q(on)
	if err == nil {
		r.served[where].Add(1)
	}
	return v, err
}

// Changes is Queries.Changes, routed.
func (r *Replica) Changes(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, int64, error) {
	type answer struct {
		items []domain.ItemMetadata
		v     int64
	}
	a, err := routed(ctx, r, func(q *Queries) (answer, error) {
		items, v, err := q.Changes(ctx, ws)
		return answer{items, v}, err
	})
	return a.items, a.v, err
}

// EncodedChanges is Queries.EncodedChanges, routed.
func (r *Replica) EncodedChanges(ctx context.Context, ws uuid.UUID, enc ItemEncoder) (pieces [][]byte, version, tag int64, err error) {
	a, err := r.EncodedAnswer(ctx, ws, nil, enc)
	a.Detach()
	return a.Pieces, a.Version, a.Tag, err
}

// EncodedAnswer is Queries.EncodedAnswer, routed.
func (r *Replica) EncodedAnswer(ctx context.Context, ws uuid.UUID, base *changeset.Base, enc ItemEncoder) (changeset.Answer, error) {
	return routed(ctx, r, func(q *Queries) (changeset.Answer, error) { return q.EncodedAnswer(ctx, ws, base, enc) })
}

// ChangesSince is Queries.ChangesSince, routed.
func (r *Replica) ChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	return routed(ctx, r, func(q *Queries) (protocol.ChangesPage, error) { return q.ChangesSince(ctx, ws, since, limit) })
}

// ItemVersions is Queries.ItemVersions, routed.
func (r *Replica) ItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	return routed(ctx, r, func(q *Queries) ([]domain.ItemMetadata, error) { return q.ItemVersions(ctx, ws, item) })
}

// WorkspacesOf is Queries.WorkspacesOf, routed.
func (r *Replica) WorkspacesOf(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	return routed(ctx, r, func(q *Queries) ([]protocol.WorkspaceInfo, error) { return q.WorkspacesOf(ctx, user) })
}
