package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

var _ eventstore.MultiAppender = (*Store)(nil)

// AppendMulti implements eventstore.MultiAppender in one explicit transaction on one
// connection, in two round trips. The first sends BEGIN (queueBegin), one statement that takes the
// advisory locks of every stream in ascending key order (as AppendBatch does, so multi
// appends, batches and single appends cannot deadlock, and the transaction gets its id
// only once it holds every stream it writes: the global order keeps each stream's order),
// then the appends, in the order given. Once their rows say what was written, the second
// sends COMMIT (with Config.Inline: first the hook's statements for every written record,
// so a failing hook rolls the whole multi append back, and only it), or ROLLBACK if any
// append wrote nothing (a wrong expected version, a record id already stored). A rolled
// back multi append is then explained: a retry of an earlier one (its results, Duplicate),
// a reuse of stored ids (ErrInvalidAppend), or a wrong expected version.
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	op := fmt.Sprintf("multi append to %d streams", len(appends))
	if err := s.begin(op); err != nil {
		return nil, err
	}
	if err := eventstore.ValidateMulti(appends); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	outs, unwritten, idExists, err := s.sendMulti(ctx, appends)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if unwritten < 0 {
		s.notifyAppended()
		results := make([]eventstore.AppendResult, len(appends))
		for i := range outs {
			results[i] = outs[i].res
		}
		return results, nil
	}
	return s.resolveMulti(ctx, op, appends, unwritten, idExists)
}

// sendMulti runs the multi append's transaction. It returns the outcome of each append
// once committed, or the index of the first append that wrote nothing (the transaction
// was rolled back; idExists tells whether it hit a stored record id), or an error.
func (s *Store) sendMulti(ctx context.Context, appends []eventstore.StreamAppend) (outs []appendOutcome, unwritten int, idExists bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, -1, false, fmt.Errorf("acquire: %w", err)
	}
	// A connection left inside a transaction (an error, a cancelled ctx) is not reused:
	// the pool destroys a released connection that is not idle. One that carried a
	// large batch is closed (largeconn.go).
	size := recordBytes(appends)
	defer release(conn, &size)
	inline := s.cfg.Inline != nil
	read, form := readAppend, plainAppend
	if inline {
		read, form = readPlaced, inlineAppend
	}
	b := &pgx.Batch{}
	queueBegin(b, appends, form)
	outs, failed, err := readAppends(conn.SendBatch(ctx, b), appends, beginStatements, read)
	if err != nil {
		return nil, -1, false, err
	}
	unwritten = failed
	for k := 0; unwritten < 0 && k < len(outs); k++ {
		if !outs[k].written {
			unwritten = k
		}
	}
	if unwritten >= 0 {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return nil, -1, false, fmt.Errorf("rollback: %w", err)
		}
		return nil, unwritten, failed >= 0, nil
	}
	if inline {
		err = s.commitInline(ctx, conn.Conn(), appends, outs)
	} else {
		err = commit(ctx, conn.Conn())
	}
	if err != nil {
		return nil, -1, false, err
	}
	return outs, -1, false, nil
}

// commit commits conn's transaction and reports whether it did.
func commit(ctx context.Context, conn *pgx.Conn) error {
	tag, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: %w (%s)", errInlineRolledBack, tag)
	}
	return nil
}

// resolveMulti explains a multi append that wrote nothing: unwritten is the first append
// that wrote nothing, idExists whether it hit a stored record id.
func (s *Store) resolveMulti(ctx context.Context, op string, appends []eventstore.StreamAppend, unwritten int, idExists bool) ([]eventstore.AppendResult, error) {
	results := make([]eventstore.AppendResult, len(appends))
	var dups, fresh []string
	for i, a := range appends {
		res, dup, err := findDuplicate(ctx, s.pool, a.Stream, a.Records)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		if dup {
			results[i] = res
			dups = append(dups, a.Stream)
		} else {
			fresh = append(fresh, a.Stream)
		}
	}
	switch {
	case len(fresh) == 0:
		for _, r := range results[1:] {
			if r.Position.Commit != results[0].Position.Commit {
				return nil, fmt.Errorf("%s: %w: the appends were stored by different calls", op, eventstore.ErrInvalidAppend)
			}
		}
		return results, nil
	case len(dups) > 0:
		return nil, fmt.Errorf("%s: %w: the appends to %v were stored before, those to %v were not",
			op, eventstore.ErrInvalidAppend, dups, fresh)
	case idExists:
		// As in resolveUnwritten: the clashing row is gone, nothing was written.
		return nil, fmt.Errorf("%s: %w", op,
			eventstore.TransientError(errors.New("a record id clashed with an append that is gone")))
	}
	a := appends[unwritten]
	var actual int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT version FROM es_streams WHERE stream_id = $1), 0)`, a.Stream).Scan(&actual)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return nil, fmt.Errorf("%s: %w", op, &eventstore.WrongVersionError{Stream: a.Stream, Expected: a.Expected, Actual: uint64(actual)})
}
