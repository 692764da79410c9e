package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

// The append is one statement: a data-modifying CTE that locks and advances the stream
// row if the expected version holds, feeding the insert of the events. When it does not
// hold, the CTE yields no row and nothing is inserted. Each form takes the stream row lock
// (or, for a new stream, the unique-index entry) and keeps it until commit. It runs after
// the stream's advisory lock (lock.go), in the same transaction: Append and AppendBatch
// send both as one pipelined batch, so one round trip and one implicit transaction.
const (
	// $1 stream, $2 ids, $3 types, $4 data, $5 metadata, $6 number of records.
	appendHeadAny = `WITH s AS (
	INSERT INTO es_streams AS st (stream_id, version) VALUES ($1, $6)
	ON CONFLICT (stream_id) DO UPDATE SET version = st.version + $6
	RETURNING st.version - $6 AS prev)
`
	appendHeadNoStream = `WITH s AS (
	INSERT INTO es_streams (stream_id, version) VALUES ($1, $6)
	ON CONFLICT (stream_id) DO NOTHING
	RETURNING 0::bigint AS prev)
`
	// $7 expected version (>= 1).
	appendHeadExact = `WITH s AS (
	UPDATE es_streams SET version = version + $6 WHERE stream_id = $1 AND version = $7
	RETURNING version - $6 AS prev)
`
	appendTail = `INSERT INTO es_events (stream_id, stream_pos, event_id, event_type, data, metadata, inline)
SELECT $1, s.prev + e.ord, e.id, e.typ, coalesce(e.dat, '\x'::bytea), coalesce(e.meta, '\x'::bytea), `
	appendTailRest = `
FROM s, unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS e(id, typ, dat, meta, ord)
ORDER BY e.ord
RETURNING stream_pos, tx_id, global_pos`
)

// appendGuarded is the insert of an inline append whose read-model statements follow
// it in the same round trip (inline.go): when the expected version does not hold (s is
// empty), es_expected raises SQLSTATE ES001 instead of letting the insert write
// nothing, so that the implicit transaction aborts before those statements run. g is
// one row whatever s holds (an aggregate), so es_expected always runs.
const appendGuarded = `, g AS (SELECT es_expected(count(*) > 0, $1) AS ok, max(prev) AS prev FROM s)
INSERT INTO es_events (stream_id, stream_pos, event_id, event_type, data, metadata, inline)
SELECT $1, g.prev + e.ord, e.id, e.typ, coalesce(e.dat, '\x'::bytea), coalesce(e.meta, '\x'::bytea), true
FROM g, unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS e(id, typ, dat, meta, ord)
WHERE g.ok
ORDER BY e.ord
RETURNING stream_pos, tx_id, global_pos`

// appendForm selects the insert of an append statement.
type appendForm int

const (
	plainAppend   appendForm = iota // events not marked inline; nothing written when the version does not hold
	inlineAppend                    // events marked inline (Config.Inline); nothing written when it does not hold
	guardedAppend                   // marked inline, and ES001 raised when it does not hold
)

// tails are the inserts of the append forms.
var tails = [3]string{appendTail + "false" + appendTailRest, appendTail + "true" + appendTailRest, appendGuarded}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// appendStatement returns the SQL and arguments of one append.
func appendStatement(stream string, expected eventstore.ExpectedVersion, records []eventstore.Record, form appendForm) (string, []any) {
	tail := tails[form]
	n := len(records)
	ids := make([]uuid.UUID, n)
	types := make([]string, n)
	data := make([][]byte, n)
	meta := make([][]byte, n)
	for i, r := range records {
		ids[i], types[i], data[i], meta[i] = r.ID, r.Type, r.Data, r.Metadata
	}
	args := []any{stream, ids, types, data, meta, int64(n)}
	v, ok := expected.Version()
	switch {
	case !ok:
		return appendHeadAny + tail, args
	case v == 0:
		return appendHeadNoStream + tail, args
	default:
		return appendHeadExact + tail, append(args, int64(v))
	}
}

// appendOutcome is what one append statement did.
type appendOutcome struct {
	res      eventstore.AppendResult
	written  bool // false: the expected version did not hold; nothing was written
	idExists bool // an event id is already stored; nothing was written
	// refused: the guarded form found the expected version not holding and aborted
	// the transaction; nothing was written.
	refused bool
	// placed holds each written record's stream version, in record order (only when
	// asked for: the inline projection needs them).
	placed []uint64
}

// execAppend runs one append statement in tx, after taking the stream's advisory lock.
// A unique violation on the event id is reported as idExists (the statement failed, so
// the transaction is aborted).
func execAppend(ctx context.Context, tx pgx.Tx, stream string, expected eventstore.ExpectedVersion, records []eventstore.Record) (appendOutcome, error) {
	k := streamLockKey(stream)
	if _, err := tx.Exec(ctx, lockStreamSQL, k.hi, k.lo); err != nil {
		return appendOutcome{}, fmt.Errorf("lock stream: %w", err)
	}
	sql, args := appendStatement(stream, expected, records, plainAppend)
	return readAppend(tx.Query(ctx, sql, args...))
}

// readAppend reads the rows of one append statement.
func readAppend(rows pgx.Rows, err error) (appendOutcome, error) { return readRows(rows, err, false) }

// readPlaced reads the rows of one append statement and the version each record took.
func readPlaced(rows pgx.Rows, err error) (appendOutcome, error) { return readRows(rows, err, true) }

func readRows(rows pgx.Rows, err error, place bool) (appendOutcome, error) {
	if isEventIDConflict(err) {
		return appendOutcome{idExists: true}, nil
	}
	if isUnexpectedVersion(err) {
		return appendOutcome{refused: true}, nil
	}
	if err != nil {
		return appendOutcome{}, err
	}
	var out appendOutcome
	var streamPos int64
	var txID uint64
	var globalPos int64
	_, err = pgx.ForEachRow(rows, []any{&streamPos, &txID, &globalPos}, func() error {
		if !out.written || uint64(streamPos) > out.res.StreamVersion {
			out.res = eventstore.AppendResult{
				StreamVersion: uint64(streamPos),
				Position:      eventstore.Position{Commit: txID, Prepare: uint64(globalPos)},
			}
		}
		out.written = true
		if place {
			out.placed = append(out.placed, uint64(streamPos))
		}
		return nil
	})
	if isEventIDConflict(err) {
		return appendOutcome{idExists: true}, nil
	}
	if isUnexpectedVersion(err) {
		return appendOutcome{refused: true}, nil
	}
	if err != nil {
		return appendOutcome{}, err
	}
	return out, nil
}

// Append implements eventstore.Store. The stream's advisory lock and the append
// statement go as one pipelined batch: one round trip, one implicit transaction. When
// the expected version does not hold, or an event id is already stored, it finds out
// whether the records are a retry of an append that succeeded before (returning that
// result with Duplicate set) or a conflict.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, records ...eventstore.Record) (eventstore.AppendResult, error) {
	op := fmt.Sprintf("append %d records to %s@%s", len(records), stream, expected)
	if err := s.begin(op); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := eventstore.ValidateAppend(stream, expected, records); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op, err)
	}
	outs, failed, err := s.sendAppends(ctx, []eventstore.StreamAppend{{Stream: stream, Expected: expected, Records: records}})
	if err != nil {
		return eventstore.AppendResult{}, s.fail(ctx, op, err)
	}
	if failed < 0 && outs[0].written {
		s.notifyAppended()
		return outs[0].res, nil
	}
	return s.resolveUnwritten(ctx, op, s.pool, stream, expected, records, outs[0].idExists)
}

// resolveUnwritten explains an append that wrote nothing: a retry of an earlier append
// (the original result, Duplicate), a reuse of stored ids (ErrInvalidAppend), or a wrong
// expected version (*WrongVersionError).
func (s *Store) resolveUnwritten(ctx context.Context, op string, q querier, stream string, expected eventstore.ExpectedVersion, records []eventstore.Record, idExists bool) (eventstore.AppendResult, error) {
	res, dup, err := findDuplicate(ctx, q, stream, records)
	if err != nil {
		return eventstore.AppendResult{}, s.fail(ctx, op, err)
	}
	if dup {
		return res, nil
	}
	if idExists {
		// The id clashed with a row that is gone now: only possible inside an
		// AppendBatch, with another append of the same batch that was then rolled
		// back. Nothing was written and a retry will not clash: transient.
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op,
			eventstore.TransientError(errors.New("a record id clashed with a rolled-back append of the same batch")))
	}
	var actual int64
	err = q.QueryRow(ctx, `SELECT coalesce((SELECT version FROM es_streams WHERE stream_id = $1), 0)`, stream).Scan(&actual)
	if err != nil {
		return eventstore.AppendResult{}, s.fail(ctx, op, err)
	}
	return eventstore.AppendResult{}, &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: uint64(actual)}
}

// findDuplicate looks the record ids up. None stored: not a duplicate, no error. All
// stored as exactly one earlier append to stream (same order, consecutive versions, one
// transaction, nothing else of that transaction in the stream around them): the result
// of that append with Duplicate set. Anything else: an ErrInvalidAppend conflict.
func findDuplicate(ctx context.Context, q querier, stream string, records []eventstore.Record) (eventstore.AppendResult, bool, error) {
	ids := make([]uuid.UUID, len(records))
	for i, r := range records {
		ids[i] = r.ID
	}
	type stored struct {
		stream    string
		pos       int64
		txID      uint64
		globalPos int64
	}
	found := map[uuid.UUID]stored{}
	rows, err := q.Query(ctx, `SELECT event_id, stream_id, stream_pos, tx_id, global_pos FROM es_events WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	var id uuid.UUID
	var st stored
	if _, err := pgx.ForEachRow(rows, []any{&id, &st.stream, &st.pos, &st.txID, &st.globalPos}, func() error {
		found[id] = st
		return nil
	}); err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if len(found) == 0 {
		return eventstore.AppendResult{}, false, nil
	}
	conflict := func(id uuid.UUID) error {
		if st, ok := found[id]; ok {
			return fmt.Errorf("%w: record id %s already stored at %s@%d, not as this same append", eventstore.ErrInvalidAppend, id, st.stream, st.pos)
		}
		return fmt.Errorf("%w: record ids already stored, not as this same append", eventstore.ErrInvalidAppend)
	}
	first, ok := found[records[0].ID]
	if !ok || first.stream != stream || len(found) != len(records) {
		for _, r := range records {
			if _, ok := found[r.ID]; ok {
				return eventstore.AppendResult{}, false, conflict(r.ID)
			}
		}
	}
	var last stored
	for i, r := range records {
		st := found[r.ID]
		if st.stream != stream || st.pos != first.pos+int64(i) || st.txID != first.txID {
			return eventstore.AppendResult{}, false, conflict(r.ID)
		}
		last = st
	}
	// The original append may have held more records than these: then its neighbours
	// in the stream share its transaction.
	var around int
	err = q.QueryRow(ctx, `SELECT count(*) FROM es_events WHERE stream_id = $1 AND stream_pos IN ($2, $3) AND tx_id = $4`,
		stream, first.pos-1, last.pos+1, first.txID).Scan(&around)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	if around != 0 {
		return eventstore.AppendResult{}, false, conflict(records[0].ID)
	}
	return eventstore.AppendResult{
		StreamVersion: uint64(last.pos),
		Position:      eventstore.Position{Commit: last.txID, Prepare: uint64(last.globalPos)},
		Duplicate:     true,
	}, true, nil
}

// fail wraps a database error of op once: ErrClosed if the store was closed meanwhile,
// otherwise the classified error.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if s.closed.Load() && ctx.Err() == nil && !errors.Is(err, eventstore.ErrClosed) {
		return fmt.Errorf("%s: %w (%w)", op, eventstore.ErrClosed, err)
	}
	return fmt.Errorf("%s: %w", op, classify(ctx, err))
}

// HoldOpenAppend implements storetest.Holder: it appends rec to stream (expected
// version Any) in a transaction and leaves it open, so that the record has its
// transaction id and global_pos but is not yet committed. commit commits it. It exists
// for the conformance suite and for tests of global readers. The open transaction holds
// the stream's locks (other appends to the stream wait for it) and holds back every
// global reader of the cluster until commit (or the idle-in-transaction timeout, 60s),
// and Close waits for it, so never call it in production code. commit may be called
// more than once; it commits once.
func (s *Store) HoldOpenAppend(ctx context.Context, stream string, rec eventstore.Record) (commit func() error, err error) {
	op := fmt.Sprintf("hold open append to %s", stream)
	if err := s.begin(op); err != nil {
		return nil, err
	}
	records := []eventstore.Record{rec}
	if err := eventstore.ValidateAppend(stream, eventstore.Any(), records); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	out, err := execAppend(ctx, tx, stream, eventstore.Any(), records)
	if err == nil && !out.written {
		err = fmt.Errorf("%w: record id %s already stored", eventstore.ErrInvalidAppend, rec.ID)
	}
	if err != nil {
		_ = tx.Rollback(context.Background())
		return nil, s.fail(ctx, op, err)
	}
	return sync.OnceValue(func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tx.Commit(cctx); err != nil {
			return s.fail(cctx, op+": commit", err)
		}
		s.notifyAppended()
		return nil
	}), nil
}
