package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

var _ eventstore.BatchAppender = (*Store)(nil)

// AppendBatch implements eventstore.BatchAppender: group commit. All appends go to the
// server as one pipelined batch, run in one implicit transaction and made durable by one
// commit (one WAL flush), in one round trip: first one statement that takes the advisory
// locks of all the batch's streams in ascending key order (lock.go), so that the
// transaction gets its id only once it holds every stream it writes and concurrent
// batches cannot deadlock; then the same single-statement appends Append uses, in
// stream-name order.
//
// An append whose expected version does not hold writes nothing and raises no error, so
// it cannot disturb the others; no savepoints are needed for it. A record id already
// stored does raise an error (unique violation), which aborts the transaction: that
// append is then taken out and the rest sent again, so it fails alone.
//
// Each distinct stream lock takes one entry of PostgreSQL's shared lock table until
// commit. The table holds max_locks_per_transaction × (max_connections +
// max_prepared_transactions) entries for all sessions together (6,400 with the
// defaults): keep batches to a few hundred streams. A batch that finds the table full
// fails as a whole with SQLSTATE 53200 (out of shared memory), writing nothing.
func (s *Store) AppendBatch(ctx context.Context, appends []eventstore.StreamAppend) []eventstore.BatchResult {
	results := make([]eventstore.BatchResult, len(appends))
	op := func(i int) string {
		a := appends[i]
		return fmt.Sprintf("batch append %d records to %s@%s", len(a.Records), a.Stream, a.Expected)
	}
	if err := s.begin(fmt.Sprintf("batch append of %d", len(appends))); err != nil {
		for i := range results {
			results[i].Err = err
		}
		return results
	}
	var run []int // appends still to send, in stream order
	for i, err := range eventstore.ValidateBatch(appends) {
		if err != nil {
			results[i].Err = fmt.Errorf("%s: %w", op(i), err)
			continue
		}
		run = append(run, i)
	}
	sort.Slice(run, func(a, b int) bool { return appends[run[a]].Stream < appends[run[b]].Stream })

	var unwritten, idExists []int
	for len(run) > 0 {
		batch := make([]eventstore.StreamAppend, len(run))
		for k, i := range run {
			batch[k] = appends[i]
		}
		outs, failed, err := s.sendAppends(ctx, batch)
		if errors.Is(err, errInline) && len(run) > 1 {
			// One append's read-model write failed and took the shared transaction
			// with it: each append goes again alone, so that it fails alone.
			for _, i := range run {
				results[i] = s.AppendBatch(ctx, appends[i:i+1])[0]
			}
			return results
		}
		if err != nil {
			for _, i := range run {
				results[i].Err = s.fail(ctx, op(i), err)
			}
			break
		}
		if failed >= 0 {
			// run[failed] reused a stored id, or (sent with its read-model statements
			// in one round trip) found its expected version not holding, and aborted
			// the transaction: take it out and send the rest again.
			if outs[failed].idExists {
				idExists = append(idExists, run[failed])
			} else {
				unwritten = append(unwritten, run[failed])
			}
			run = append(run[:failed:failed], run[failed+1:]...)
			continue
		}
		wrote := false
		for k, i := range run {
			if outs[k].written {
				results[i].Result = outs[k].res
				wrote = true
			} else {
				unwritten = append(unwritten, i)
			}
		}
		if wrote {
			s.notifyAppended()
		}
		break
	}
	for _, i := range unwritten {
		a := appends[i]
		results[i].Result, results[i].Err = s.resolveUnwritten(ctx, op(i), s.pool, a.Stream, a.Expected, a.Records, false)
	}
	for _, i := range idExists {
		a := appends[i]
		results[i].Result, results[i].Err = s.resolveUnwritten(ctx, op(i), s.pool, a.Stream, a.Expected, a.Records, true)
	}
	return results
}

// sendAppends sends appends, in this order, as one pipelined batch and so one implicit
// transaction, preceded by the advisory locks of their streams. It returns what each did
// once the transaction has committed; or the index of an append that aborted the
// transaction (nothing was written), whose outcome says why: it hit an existing record
// id, or (refused, with Config.Inline) its expected version did not hold; or an error of
// the whole transaction.
func (s *Store) sendAppends(ctx context.Context, appends []eventstore.StreamAppend) (outs []appendOutcome, failed int, err error) {
	eventstore.MarkPhase(ctx, eventstore.PhaseWriting)
	if s.cfg.Inline != nil {
		return s.sendAppendsInline(ctx, appends)
	}
	b := &pgx.Batch{}
	queueAppends(b, appends, plainAppend)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("acquire: %w", err)
	}
	size := recordBytes(appends)
	defer release(conn, &size) // closed after a large batch (largeconn.go)
	// Reading up to the end of the implicit transaction: only a nil error means it
	// committed.
	outs, failed, err = readAppends(conn.SendBatch(ctx, b), appends, []string{"lock streams"}, readAppend)
	if err != nil || failed >= 0 {
		return outs, failed, err
	}
	eventstore.MarkPhase(ctx, eventstore.PhaseCommitted)
	return outs, -1, nil
}

// beginSQL opens the explicit transaction of an inline or multi append, and
// genericPlansSQL makes the rest of it run every prepared statement on its generic
// plan. The statements of such a transaction (the appends, the read models' writes)
// take their rows from array parameters through unnest, whose length a generic plan
// cannot see (it assumes 10 elements), so PostgreSQL's default plan_cache_mode judged
// every generic plan dearer than the custom plan for a 1-element array and planned
// each execution anew: about 0.15 ms of PostgreSQL's CPU per statement, as much as
// executing it (docs/benchmarks.md, "PostgreSQL's work per commit"). Their plans do not
// depend on the values (index lookups by key, one per element), so one plan per
// connection serves every execution. The setting is local: it ends with the
// transaction, and the pool's other statements keep the default.
const (
	beginSQL        = "BEGIN"
	genericPlansSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`
)

// beginStatements names, for readAppends, what queueBegin queues before the appends.
var beginStatements = []string{"begin", "generic plans", "lock streams"}

// queueBegin queues BEGIN, the generic plans setting, and the appends (queueAppends).
func queueBegin(b *pgx.Batch, appends []eventstore.StreamAppend, form appendForm) {
	b.Queue(beginSQL)
	b.Queue(genericPlansSQL)
	queueAppends(b, appends, form)
}

// queueAppends queues the advisory locks of the appends' streams, then the appends in
// the given form.
func queueAppends(b *pgx.Batch, appends []eventstore.StreamAppend, form appendForm) {
	queueLocks(b, appends)
	for _, a := range appends {
		sql, args := appendStatement(a.Stream, a.Expected, a.Records, form)
		b.Queue(sql, args...)
	}
}

// readAppends reads a batch queued as first (statements without rows, named for errors)
// and then the appends: what each append did, or the index of the first that aborted
// the transaction (outs[failed] says why; the statements after it did not run), or an
// error. It closes br.
func readAppends(br pgx.BatchResults, appends []eventstore.StreamAppend, first []string,
	read func(pgx.Rows, error) (appendOutcome, error)) (outs []appendOutcome, failed int, err error) {
	outs, failed, err = readAppendsOpen(br, appends, first, read)
	if err != nil {
		return nil, -1, err
	}
	if err := br.Close(); err != nil && !(failed >= 0 && abortedBy(err, outs[failed])) {
		return nil, -1, err
	}
	return outs, failed, nil
}

// readAppendsOpen is readAppends up to the last append, leaving br open unless it
// returns an error (then it closed br).
func readAppendsOpen(br pgx.BatchResults, appends []eventstore.StreamAppend, first []string,
	read func(pgx.Rows, error) (appendOutcome, error)) (outs []appendOutcome, failed int, err error) {
	for _, what := range first {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, -1, fmt.Errorf("%s: %w", what, err)
		}
	}
	outs = make([]appendOutcome, len(appends))
	failed = -1
	for k := range appends {
		out, err := read(br.Query())
		if err != nil {
			br.Close()
			return nil, -1, err
		}
		outs[k] = out
		if out.idExists || out.refused {
			failed = k
			break
		}
	}
	return outs, failed, nil
}

// abortedBy reports whether err, as the batch's closing error, is the one that made an
// append abort the transaction with outcome out.
func abortedBy(err error, out appendOutcome) bool {
	return (out.idExists && isEventIDConflict(err)) || (out.refused && isUnexpectedVersion(err))
}

// queueLocks queues the statement that takes the advisory locks of the appends' streams.
func queueLocks(b *pgx.Batch, appends []eventstore.StreamAppend) {
	if len(appends) == 1 {
		k := streamLockKey(appends[0].Stream)
		b.Queue(lockStreamSQL, k.hi, k.lo)
	} else {
		streams := make([]string, len(appends))
		for i, a := range appends {
			streams[i] = a.Stream
		}
		his, los := streamLockKeys(streams)
		b.Queue(lockStreamsSQL, his, los)
	}
}
