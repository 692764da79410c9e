package projections

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Transient reports whether a failed query is worth trying again: the connection was
// lost or the server is shutting a session down (a database restart, a terminated
// backend). Queries change nothing, so a retry is always safe; the service retries the
// reads it makes of the read models on this answer.
func (q *Queries) Transient(err error) bool { return transientRead(err) }

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
