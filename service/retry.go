package service

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// readAttempts bounds the tries of one read-model query.
const readAttempts = 5

// transientRead reports whether a failed read is worth trying again: the connection was
// lost or the server is shutting a session down (a database restart, a terminated
// backend). Reads change nothing, so a retry is always safe.
func transientRead(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if eventstore.Transient(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P: operator intervention (admin shutdown,
		// crash shutdown, cannot connect now); 40001/40P01: serialization, deadlock.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") ||
			pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || pgconn.Timeout(err) || isClosedConn(err)
}

// isClosedConn recognises a query on a pooled connection the server already closed.
func isClosedConn(err error) bool {
	var netErr interface{ Temporary() bool }
	return errors.As(err, &netErr) || errors.Is(err, errConnClosed)
}

var errConnClosed = errors.New("conn closed")

// read runs a read-model query, retrying transient failures with a short back-off.
func read[T any](ctx context.Context, q func(ctx context.Context) (T, error)) (T, error) {
	var v T
	var err error
	for attempt := range readAttempts {
		v, err = q(ctx)
		if !transientRead(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	return v, err
}
