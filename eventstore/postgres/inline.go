package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

// sendAppendsInline is sendAppends with Config.Inline. When every append names the
// version it expects (so the versions its records take are known before it runs), it
// takes one round trip (sendAppendsOneTrip); otherwise two (sendAppendsTwoTrips).
func (s *Store) sendAppendsInline(ctx context.Context, appends []eventstore.StreamAppend) (outs []appendOutcome, failed int, err error) {
	for _, a := range appends {
		if _, ok := a.Expected.Version(); !ok {
			return s.sendAppendsTwoTrips(ctx, appends)
		}
	}
	return s.sendAppendsOneTrip(ctx, appends)
}

// sendAppendsOneTrip sends BEGIN (queueBegin), the stream locks, the appends in their
// guarded form, the statements Inline queues for their records and COMMIT as one
// pipelined batch on one connection: one round trip. (An explicit transaction: the read
// models' statements lock tables, which PostgreSQL allows only in a transaction
// block.) The records are given to Inline with the versions they will take if the expected versions hold; if
// one does not, its append raises (es_expected), the server skips everything after it
// up to the batch's end, COMMIT included, and the transaction is rolled back: nothing
// is written, and that append is reported as failed (refused). A failing Inline
// statement fails the transaction the same way.
func (s *Store) sendAppendsOneTrip(ctx context.Context, appends []eventstore.StreamAppend) (outs []appendOutcome, failed int, err error) {
	var recs []eventstore.RecordedEvent
	for _, a := range appends {
		base, _ := a.Expected.Version()
		for i, r := range a.Records {
			recs = append(recs, eventstore.RecordedEvent{ID: r.ID, Stream: a.Stream, StreamVersion: base + uint64(i) + 1,
				Type: r.Type, Data: r.Data, Metadata: r.Metadata, Inline: true, Value: r.Value})
		}
	}
	b := &pgx.Batch{}
	queueBegin(b, appends, guardedAppend)
	first := b.Len()
	if err := s.cfg.Inline(recs, b); err != nil {
		return nil, -1, fmt.Errorf("%w: %w", errInline, err)
	}
	n := b.Len() - first
	b.Queue("COMMIT")
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("acquire: %w", err)
	}
	// A connection left inside a transaction (an error, a cancelled ctx) is not reused:
	// the pool destroys a released connection that is not idle. One that carried a
	// large batch is closed (largeconn.go).
	size := recordBytes(appends)
	defer release(conn, &size)
	br := conn.SendBatch(ctx, b)
	outs, failed, err = readAppendsOpen(br, appends, beginStatements, readAppend)
	if err != nil {
		return nil, -1, err
	}
	if failed >= 0 {
		if err := br.Close(); err != nil && !abortedBy(err, outs[failed]) {
			return nil, -1, err
		}
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return nil, -1, fmt.Errorf("rollback: %w", err)
		}
		return outs, failed, nil
	}
	if err := readInline(br, n); err != nil {
		return nil, -1, err
	}
	eventstore.MarkPhase(ctx, eventstore.PhaseCommitted)
	return outs, -1, nil
}

// readInline reads the results of n Inline statements and of COMMIT, and closes br. It
// returns nil only if the transaction committed.
func readInline(br pgx.BatchResults, n int) error {
	defer br.Close()
	for i := 0; i < n; i++ {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("%w: statement %d of %d: %w", errInline, i+1, n, err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: %w: %w (%s)", errInline, errInlineRolledBack, tag)
	}
	return br.Close()
}

// sendAppendsTwoTrips is sendAppendsInline for appends whose versions are known only
// once they ran (expected version Any): the same statements in an explicit transaction
// on one connection, in two round trips. The first sends BEGIN (queueBegin), the stream locks and
// the appends; once their rows say what was written, the second sends the statements
// Inline queued for the written records, then COMMIT. A failing statement aborts the
// transaction, so COMMIT answers ROLLBACK and nothing is written.
func (s *Store) sendAppendsTwoTrips(ctx context.Context, appends []eventstore.StreamAppend) (outs []appendOutcome, failed int, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, -1, fmt.Errorf("acquire: %w", err)
	}
	// A connection left inside a transaction (an error, a cancelled ctx) is not reused:
	// the pool destroys a released connection that is not idle. One that carried a
	// large batch is closed (largeconn.go).
	size := recordBytes(appends)
	defer release(conn, &size)
	b := &pgx.Batch{}
	queueBegin(b, appends, inlineAppend)
	outs, failed, err = readAppends(conn.SendBatch(ctx, b), appends, beginStatements, readPlaced)
	if err != nil {
		return nil, -1, err
	}
	eventstore.MarkPhase(ctx, eventstore.PhaseSent)
	if failed >= 0 {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return nil, -1, fmt.Errorf("rollback: %w", err)
		}
		return outs, failed, nil
	}
	if err := s.commitInline(ctx, conn.Conn(), appends, outs); err != nil {
		return nil, -1, err
	}
	eventstore.MarkPhase(ctx, eventstore.PhaseCommitted)
	return outs, -1, nil
}

// errInlineRolledBack is an inline statement's failure seen only as COMMIT's answer.
var errInlineRolledBack = errors.New("the transaction was rolled back")

// errInline marks a failure of the Inline hook or of one of its statements: the
// records were stored by none of the appends of the transaction.
var errInline = errors.New("inline read-model write failed")

// commitInline queues Inline's statements for the written records and COMMIT, and
// reports whether the transaction committed.
func (s *Store) commitInline(ctx context.Context, conn *pgx.Conn, appends []eventstore.StreamAppend, outs []appendOutcome) error {
	var recs []eventstore.RecordedEvent
	for k, a := range appends {
		for i, v := range outs[k].placed {
			r := a.Records[i]
			recs = append(recs, eventstore.RecordedEvent{ID: r.ID, Stream: a.Stream, StreamVersion: v,
				Type: r.Type, Data: r.Data, Metadata: r.Metadata, Inline: true, Value: r.Value})
		}
	}
	b := &pgx.Batch{}
	if len(recs) > 0 {
		if err := s.cfg.Inline(recs, b); err != nil {
			return fmt.Errorf("%w: %w", errInline, err)
		}
	}
	n := b.Len()
	b.Queue("COMMIT")
	return readInline(conn.SendBatch(ctx, b), n)
}
