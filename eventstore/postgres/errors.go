package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/eventstore"
)

// SQLSTATE codes the store branches on.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeLockNotAvailable     = "55P03"
	codeTooManyConnections   = "53300"
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03"
	codeIdleInTxTimeout      = "25P03"
	codeUnexpectedVersion    = "ES001" // es_expected (schema/003_expected.sql)

	eventIDConstraint = "es_events_event_id_key"
)

// isEventIDConflict reports a unique violation on es_events.event_id.
func isEventIDConflict(err error) bool {
	if err == nil {
		return false // before pe, which escapes: no allocation on the append's path
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeUniqueViolation && pe.ConstraintName == eventIDConstraint
}

// isUnexpectedVersion reports a guarded append that found its expected version not
// holding (es_expected).
func isUnexpectedVersion(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeUnexpectedVersion
}

// classify maps a database error: the caller's own cancellation stays as it is, failures
// worth retrying unchanged (lost connection, serialization failure, deadlock, server
// shutting down) are wrapped with eventstore.TransientError, everything else is returned
// unchanged. An append that failed transiently may or may not have committed; retrying
// it with the same record ids is safe, because appends are idempotent by id.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == codeSerializationFailure, pe.Code == codeDeadlockDetected,
			pe.Code == codeLockNotAvailable, pe.Code == codeTooManyConnections,
			pe.Code == codeAdminShutdown, pe.Code == codeCrashShutdown,
			pe.Code == codeCannotConnectNow, pe.Code == codeIdleInTxTimeout,
			strings.HasPrefix(pe.Code, "08"): // connection exception class
			return eventstore.TransientError(err)
		}
		return err
	}
	var ce *pgconn.ConnectError
	if pgconn.SafeToRetry(err) || errors.As(err, &ce) || isConnectionLoss(err) {
		return eventstore.TransientError(err)
	}
	return err
}

// isConnectionLoss reports an error of the connection itself, not of the statement: the
// server went away mid-query, the network failed or timed out.
func isConnectionLoss(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
