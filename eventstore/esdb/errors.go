package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stacksync-es/syncservice/eventstore"
)

// classify turns an error of a call made with the operation context ctx (from begin)
// into the contract's errors: ErrClosed when Close interrupted it, the caller's context
// error, TransientError for transport failures and timeouts, err itself otherwise.
func (s *Store) classify(ctx context.Context, c *conn, err error) error {
	if err == nil {
		return nil
	}
	if s.isClosed() {
		return fmt.Errorf("%w (%v)", eventstore.ErrClosed, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if errors.Is(cerr, context.DeadlineExceeded) {
			return eventstore.TransientError(err)
		}
		return err
	}
	var ee *esdb.Error
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeConnectionClosed) {
		s.renew(c)
		return eventstore.TransientError(err)
	}
	return transientIf(err)
}

// transientIf wraps err as transient when it is a transport failure or a timeout.
func transientIf(err error) error {
	var ee *esdb.Error
	if errors.As(err, &ee) {
		switch ee.Code() {
		case esdb.ErrorCodeDeadlineExceeded, esdb.ErrorUnavailable, esdb.ErrorAborted,
			esdb.ErrorCodeNotLeader, esdb.ErrorCodeConnectionClosed:
			return eventstore.TransientError(err)
		}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return eventstore.TransientError(err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return eventstore.TransientError(err)
	}
	return err
}

func isCode(err error, code esdb.ErrorCode) bool {
	var ee *esdb.Error
	return errors.As(err, &ee) && ee.IsErrorCode(code)
}

// redactURL drops credentials from a connection string for error messages.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
