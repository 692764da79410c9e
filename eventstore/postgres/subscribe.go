package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

const (
	// subscribeBatch is the most events one handler call receives.
	subscribeBatch = 512
	// subscribeBytes bounds the events' bytes in one handler call (the first event of a
	// batch is delivered whatever its size).
	subscribeBytes = 64 << 20
	// busyFor is how long after seeing events (or a local append) a subscription keeps
	// polling at the busy interval before falling back to Config.PollInterval.
	busyFor = time.Second
	// maxRetryDelay bounds the backoff between reads that failed transiently.
	maxRetryDelay = 5 * time.Second
)

// busyInterval is the poll interval while events are arriving: a tenth of the idle
// interval, at most 20ms.
func (s *Store) busyInterval() time.Duration {
	return min(s.cfg.PollInterval/10, 20*time.Millisecond)
}

// subscription registers a subscription from from with the store; its context ends
// with ctx or with Close, and release ends it.
func (s *Store) subscription(ctx context.Context, from eventstore.Position) (context.Context, func(), error) {
	if err := s.begin(fmt.Sprintf("subscribe from %s", from)); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("subscribe from %s: %w", from, eventstore.ErrClosed)
	}
	s.subs.Add(1)
	s.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, func() { cancel(); s.subs.Done() }, nil
}

// Subscribe implements eventstore.Store by polling ReadAll's query: at once while full
// batches come back, at the busy interval while events are arriving, at
// Config.PollInterval when idle. An append through this Store wakes it at once; appends
// by other processes are seen within one poll interval. Polling alone is correct; nothing
// depends on a notification. Transient read failures are logged and retried with
// backoff until ctx ends. Close stops it with ErrClosed.
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, handle func(ctx context.Context, batch []eventstore.RecordedEvent) error) error {
	sctx, release, err := s.subscription(ctx, from)
	if err != nil {
		return err
	}
	defer release()
	ended := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("subscribe from %s: %w", from, eventstore.ErrClosed)
	}

	log := s.log.With("subscription_from", from.String())
	busyUntil := time.Now().Add(busyFor)
	retryDelay := s.busyInterval()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wake := s.wakeChan()
		batch, err := s.readAllBytes(sctx, from, subscribeBatch, subscribeBytes)
		if sctx.Err() != nil {
			return ended()
		}
		var delay time.Duration
		switch {
		case err != nil:
			err = classify(sctx, err)
			if !eventstore.Transient(err) {
				return fmt.Errorf("subscribe: read all from %s: %w", from, err)
			}
			log.Warn("event store subscription read failed; retrying", "err", err, "retry_in", retryDelay)
			delay = retryDelay
			retryDelay = min(2*retryDelay, maxRetryDelay)
		case len(batch) > 0:
			retryDelay = s.busyInterval()
			if err := handle(sctx, batch); err != nil {
				if sctx.Err() != nil && errors.Is(err, context.Canceled) {
					return ended()
				}
				return err
			}
			from = batch[len(batch)-1].Position
			busyUntil = time.Now().Add(busyFor)
			if eventstore.MayHaveMore(batch, subscribeBatch, subscribeBytes) {
				continue
			}
			delay = s.busyInterval()
		case time.Now().Before(busyUntil):
			delay = s.busyInterval()
		default:
			delay = s.cfg.PollInterval
		}
		timer.Reset(delay)
		select {
		case <-sctx.Done():
			return ended()
		case <-wake:
			busyUntil = time.Now().Add(busyFor)
		case <-timer.C:
		}
	}
}
