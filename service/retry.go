package service

import (
	"context"
	"errors"
	"time"
)

// readAttempts bounds the tries of one read-model query.
const readAttempts = 5

// read runs a read-model query, retrying with a short back-off the failures the read
// model calls transient (ReadModel.Transient). A canceled or expired ctx is never
// retried.
func read[T any](ctx context.Context, rm ReadModel, q func(ctx context.Context) (T, error)) (T, error) {
	var v T
	var err error
	for attempt := range readAttempts {
		v, err = q(ctx)
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !rm.Transient(err) {
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
