package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
)

// DefaultMaxAttempts is how often a follower tries an event that fails for a reason of
// its own (the broker nacked it, refused it as too large, refused a binding of it)
// before it sets the event aside.
const DefaultMaxAttempts = 5

// DefaultPoisonAfter is the least time the broker's nacks of one notification must span
// (besides MaxAttempts of them) before the notifier sets its event aside.
const DefaultPoisonAfter = time.Minute

// DefaultStallAfter is how long a follower may make no progress while events are
// pending before Healthy reports it.
const DefaultStallAfter = 30 * time.Second

// SetAside is an event a follower could never handle and moved past (table
// notify_set_aside).
type SetAside struct {
	Follower      string
	Position      eventstore.Position
	EventID       uuid.UUID
	Stream        string
	StreamVersion uint64
	Type          string
	Error         string
	Attempts      int
	At            time.Time
}

// ListSetAside returns the events set aside by follower (every follower when it is
// empty), oldest position first, at most limit of them (limit <= 0: 1000). It is the
// read syncctl shows an operator.
func ListSetAside(ctx context.Context, db *pgxpool.Pool, follower string, limit int) ([]SetAside, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.Query(ctx, `SELECT follower, commit_pos, prepare_pos, event_id, stream, stream_version, event_type,
			error, attempts, set_aside_at
		FROM notify_set_aside WHERE $1 = '' OR follower = $1
		ORDER BY follower, commit_pos, prepare_pos LIMIT $2`, follower, limit)
	if err != nil {
		return nil, fmt.Errorf("list set-aside events of %q: %w", follower, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SetAside, error) {
		var s SetAside
		var c, p, v int64
		err := r.Scan(&s.Follower, &c, &p, &s.EventID, &s.Stream, &v, &s.Type, &s.Error, &s.Attempts, &s.At)
		s.Position, s.StreamVersion = eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, uint64(v)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list set-aside events of %q: %w", follower, err)
	}
	return out, nil
}

// poisonError marks a failure of one event for a reason of its own (not of the broker
// or the database as a whole): it counts as an attempt of that event, and after
// MaxAttempts of them the event is set aside, provided the attempts span at least after
// (0: at once).
type poisonError struct {
	err   error
	after time.Duration
}

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

// poison marks err as a failure of the event being handled.
func poison(err error) error { return &poisonError{err: err} }

// poisonAfter marks err as a failure that may be the event's own or a passing broker
// condition (a nack): it counts as an attempt of the event, but the event is set aside
// only once its failed attempts span at least d as well.
func poisonAfter(err error, d time.Duration) error { return &poisonError{err: err, after: d} }

// poisonSpan is the time the attempts failing with err must span before the event is
// set aside (0 when err is not poison or is poison at once).
func poisonSpan(err error) time.Duration {
	var p *poisonError
	if errors.As(err, &p) {
		return p.after
	}
	return 0
}

// isPoison reports whether err is a failure of the event being handled.
func isPoison(err error) bool {
	var p *poisonError
	return errors.As(err, &p)
}

// setAsideEntry is an event to record in notify_set_aside with the checkpoint that
// moves past it.
type setAsideEntry struct {
	rec      eventstore.RecordedEvent
	err      error
	attempts int
}

// maxErrorText bounds the error text stored with a set-aside event.
const maxErrorText = 2000

// errorText makes err storable in a text column: valid UTF-8, no NUL, bounded.
func errorText(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\\0")
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") + "…"
	}
	return s
}

// insertSetAside records e for follower in tx and reports whether the row is new (a
// redo after a failed checkpoint commit finds it there already).
func insertSetAside(ctx context.Context, tx pgx.Tx, follower string, e setAsideEntry) (bool, error) {
	r := e.rec
	tag, err := tx.Exec(ctx, `INSERT INTO notify_set_aside (follower, commit_pos, prepare_pos, event_id, stream, stream_version,
			event_type, error, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		follower, int64(r.Position.Commit), int64(r.Position.Prepare), r.ID, strings.ToValidUTF8(r.Stream, "?"),
		int64(r.StreamVersion), strings.ToValidUTF8(r.Type, "?"), errorText(e.err), e.attempts)
	if err != nil {
		return false, fmt.Errorf("set aside event %s at %s: %w", r.ID, r.Position, err)
	}
	return tag.RowsAffected() == 1, nil
}
