package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// asideEvent is an event of the model's streams that cannot be applied, with why.
type asideEvent struct {
	rec *eventstore.RecordedEvent
	err string
}

// insertAside records set-aside events in the model's set_aside table (search_path is
// the model's schema). A repeat of the same position changes nothing.
func insertAside(ctx context.Context, tx pgx.Tx, aside []asideEvent) error {
	for _, a := range aside {
		c, err := toInt64(a.rec.Position.Commit)
		if err != nil {
			return err
		}
		p, err := toInt64(a.rec.Position.Prepare)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO set_aside (commit_pos, prepare_pos, stream_id, stream_version, event_type, error)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
			c, p, pgText(a.rec.Stream), int64(a.rec.StreamVersion), pgText(a.rec.Type), pgText(a.err)); err != nil {
			return fmt.Errorf("set aside %s@%d: %w", a.rec.Stream, a.rec.StreamVersion, err)
		}
	}
	return nil
}

// logAside reports set-aside events at error level: an operator must look at them
// (docs/operations.md, "Set-aside events").
func logAside(log *slog.Logger, model string, aside []asideEvent) {
	for _, a := range aside {
		log.Error("event set aside: the read model cannot apply it", "model", model, "stream", a.rec.Stream,
			"version", a.rec.StreamVersion, "type", a.rec.Type, "position", a.rec.Position.String(), "err", a.err)
	}
}

// transient reports whether a failed batch may succeed when simply retried: the
// connection was lost or is unusable, the server is shutting down or short of
// resources, the transaction was a serialization or deadlock victim, or the event store
// said so. A transient failure is retried as it is and never sets an event aside.
func transient(err error) bool {
	if eventstore.Transient(err) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "40", "53", "57", "58": // connection, rollback, resources, operator, system
			return true
		}
		return pgErr.Code == "55P03" // lock_not_available
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, pgx.ErrTxClosed)
}

// poison reports whether a batch failed because of what it holds, so that splitting it
// finds the event that cannot be applied: not transient, not a moved checkpoint, not
// the end of ctx.
func poison(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && !errors.Is(err, errCheckpointMoved) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !transient(err)
}

// applyFunc applies a prepared batch after expected, in its own transaction (or
// savepoint), and returns what it did.
type applyFunc func(ctx context.Context, expected eventstore.Position, b prepared) (applyResult, error)

// isolating applies evs (in global order, after expected) through apply. When the batch
// fails with a poison error, it splits it in halves and applies each the same way,
// down to a single event, which it sets aside with the error instead; every other event
// is applied. A transient failure is returned as it is (the caller retries the batch).
// done is called after every applied part with its result.
func isolating(ctx context.Context, m *Model, log *slog.Logger, expected eventstore.Position,
	evs []eventstore.RecordedEvent, b *prepared, apply applyFunc, done func(applyResult)) (checkpointRow, error) {
	if b == nil {
		p := prepare(m, evs)
		b = &p
	}
	res, err := apply(ctx, expected, *b)
	if err == nil {
		done(res)
		return res.checkpoint, nil
	}
	if !poison(ctx, err) {
		return checkpointRow{}, err
	}
	if len(evs) == 1 {
		aside := prepared{evs: evs, aside: []asideEvent{{rec: &evs[0], err: err.Error()}}}
		res, err2 := apply(ctx, expected, aside)
		if err2 != nil {
			return checkpointRow{}, fmt.Errorf("set aside %s@%d after %w: %w", evs[0].Stream, evs[0].StreamVersion, err, err2)
		}
		done(res)
		return res.checkpoint, nil
	}
	half := len(evs) / 2
	log.Warn("a batch failed; splitting it to isolate the event that cannot be applied", "model", m.name,
		"events", len(evs), "after", expected.String(), "err", err)
	cp, err := isolating(ctx, m, log, expected, evs[:half], nil, apply, done)
	if err != nil {
		return checkpointRow{}, err
	}
	return isolating(ctx, m, log, cp.Position, evs[half:], nil, apply, done)
}

// SetAside is an event a read model could not apply.
type SetAside struct {
	Position      eventstore.Position
	Stream        string
	StreamVersion uint64
	Type          string
	Error         string
	At            time.Time
}

// Querier is what the read functions need: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// SetAsideOf returns the named model's set-aside events, oldest first, at most limit
// (all when limit <= 0), and how many there are in all.
func SetAsideOf(ctx context.Context, db Querier, model string, limit int) ([]SetAside, int64, error) {
	m, err := ModelNamed(model)
	if err != nil {
		return nil, 0, err
	}
	table := pgx.Identifier{m.Schema(), "set_aside"}.Sanitize()
	var total int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&total); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
			return nil, 0, nil // not migrated yet: nothing set aside
		}
		return nil, 0, fmt.Errorf("set-aside events of %s: %w", model, err)
	}
	q := `SELECT commit_pos, prepare_pos, stream_id, stream_version, event_type, error, set_aside_at FROM ` + table +
		` ORDER BY commit_pos, prepare_pos`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("set-aside events of %s: %w", model, err)
	}
	var out []SetAside
	var c, p, v int64
	var s SetAside
	_, err = pgx.ForEachRow(rows, []any{&c, &p, &s.Stream, &v, &s.Type, &s.Error, &s.At}, func() error {
		s.Position, s.StreamVersion = eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, uint64(v)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("set-aside events of %s: %w", model, err)
	}
	return out, total, nil
}
