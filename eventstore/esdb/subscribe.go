package esdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Subscribe follows the global order after from with a catch-up SubscribeToAll,
// filtered on the server, calling handle with batches of the events that arrived
// together. A dropped subscription is resumed from the last delivered event after a
// backoff. It returns ctx.Err() when ctx ends, ErrClosed when the store is closed, and
// handle's error as is.
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, handle func(ctx context.Context, batch []eventstore.RecordedEvent) error) error {
	caller := ctx
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("esdb: subscribe from %s: %w", from, err)
	}
	defer done()
	if err := caller.Err(); err != nil {
		return err
	}
	filter := esdb.ExcludeSystemEventsFilter()
	if s.cfg.StreamPrefix != "" {
		filter = &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.cfg.StreamPrefix}}
	}
	after := from
	backoff := s.cfg.ResubscribeBackoff
	for {
		delivered, err := s.follow(ctx, c, &after, filter, handle)
		if err == nil {
			err = errors.New("subscription ended")
		}
		if delivered {
			backoff = s.cfg.ResubscribeBackoff
		}
		var herr handlerError
		if errors.As(err, &herr) {
			return herr.err
		}
		if s.isClosed() {
			return fmt.Errorf("esdb: subscribe: %w", eventstore.ErrClosed)
		}
		if cerr := caller.Err(); cerr != nil {
			return cerr
		}
		cerr := s.classify(ctx, c, err)
		if isCode(err, esdb.ErrorCodeAccessDenied) || isCode(err, esdb.ErrorCodeUnauthenticated) || isCode(err, esdb.ErrorCodeUnsupportedFeature) {
			return fmt.Errorf("esdb: subscribe from %s: %w", after, cerr)
		}
		s.log.Warn("esdb: subscription dropped; resubscribing", "after", after.String(), "backoff", backoff, "err", cerr)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if s.isClosed() {
				return fmt.Errorf("esdb: subscribe: %w", eventstore.ErrClosed)
			}
			return caller.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.ResubscribeMaxBackoff)
		s.mu.Lock()
		c = s.conn // renew may have replaced a dead client
		s.mu.Unlock()
	}
}

// handlerError marks the handler's own error, which ends Subscribe.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// follow runs one subscription from *after until it drops (returning why), ctx ends or
// handle fails (returning handlerError). It advances *after past every delivered event
// and reports whether it delivered any.
func (s *Store) follow(ctx context.Context, c *conn, after *eventstore.Position, filter *esdb.SubscriptionFilter,
	handle func(context.Context, []eventstore.RecordedEvent) error) (bool, error) {
	// fctx ends this subscription's reader, whichever way follow returns.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	sub, err := callCtx(fctx, c, func() (*esdb.Subscription, error) {
		return c.c.SubscribeToAll(fctx, esdb.SubscribeToAllOptions{From: allPosition(*after), Filter: filter})
	}, func(sub *esdb.Subscription) { sub.Close() })
	if err != nil {
		return false, err
	}
	// A reader goroutine turns Recv into a channel so that events already received can
	// be batched without blocking.
	events := make(chan *esdb.RecordedEvent, s.cfg.SubscribeBatch)
	var dropErr error
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		receive(fctx, sub, events, &dropErr)
	}()
	stop := func() {
		fcancel()
		sub.Close()
		<-readerDone
	}
	delivered := false
	for {
		var first *esdb.RecordedEvent
		var ok bool
		select {
		case first, ok = <-events:
		case <-ctx.Done():
			stop()
			return delivered, ctx.Err()
		}
		if !ok {
			stop()
			return delivered, dropErr
		}
		batch := s.batch(first, events, after)
		if len(batch) == 0 {
			continue
		}
		if err := handle(ctx, batch); err != nil {
			stop()
			return delivered, handlerError{err}
		}
		delivered = true
	}
}

// receive turns sub's Recv into events, which it closes when it returns: when the
// subscription drops (setting *dropErr to why) or ctx ends.
func receive(ctx context.Context, sub *esdb.Subscription, events chan<- *esdb.RecordedEvent, dropErr *error) {
	defer close(events)
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			*dropErr = ev.SubscriptionDropped.Error
			if *dropErr == nil {
				*dropErr = errors.New("subscription dropped")
			}
			return
		case ev.EventAppeared != nil:
			select {
			case events <- ev.EventAppeared.OriginalEvent():
			case <-ctx.Done():
				return
			}
		}
	}
}

// batch takes first and the events already waiting in events, up to SubscribeBatch in
// all, and returns those of this store's order after *after, advancing *after past
// every event taken.
func (s *Store) batch(first *esdb.RecordedEvent, events <-chan *esdb.RecordedEvent, after *eventstore.Position) []eventstore.RecordedEvent {
	raw := []*esdb.RecordedEvent{first}
drain:
	for len(raw) < s.cfg.SubscribeBatch {
		select {
		case e, ok := <-events:
			if !ok {
				break drain
			}
			raw = append(raw, e)
		default:
			break drain
		}
	}
	batch := make([]eventstore.RecordedEvent, 0, len(raw))
	for _, e := range raw {
		if e == nil {
			continue
		}
		p := position(e.Position)
		if !after.Less(p) {
			continue // at or before the resume point
		}
		*after = p
		if s.ours(e) {
			batch = append(batch, s.convert(e))
		}
	}
	return batch
}
