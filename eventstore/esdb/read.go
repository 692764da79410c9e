package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/stacksync-es/syncservice/eventstore"
)

// ReadStream returns up to limit events of stream with version >= from, oldest first.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("esdb: read stream %s: %w", stream, err)
	}
	defer done()
	full := s.cfg.StreamPrefix + stream
	if limit <= 0 || full == "" {
		return nil, nil
	}
	if from == 0 {
		from = 1
	}
	evs, err := s.slots(ctx, c, full, from-1, limit)
	if err != nil {
		return nil, fmt.Errorf("esdb: read stream %s from %d: %w", stream, from, s.classify(ctx, c, err))
	}
	out := make([]eventstore.RecordedEvent, len(evs))
	for i, e := range evs {
		out[i] = s.convert(e)
	}
	return out, nil
}

// StreamVersion returns the version of the stream's last event, 0 if it has none.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("esdb: stream version %s: %w", stream, err)
	}
	defer done()
	full := s.cfg.StreamPrefix + stream
	if full == "" {
		return 0, nil
	}
	_, last, err := s.tail(ctx, c, full, 1)
	if err != nil {
		return 0, fmt.Errorf("esdb: stream version %s: %w", stream, s.classify(ctx, c, err))
	}
	return uint64(last + 1), nil
}

// ReadAll returns up to limit events strictly after from in the global order. The
// server's ReadAll includes the event at its start position, so that one is skipped;
// system events and other prefixes' streams are filtered here, scanning ReadPage events
// per request.
func (s *Store) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("esdb: read all from %s: %w", from, err)
	}
	defer done()
	if limit <= 0 {
		return nil, nil
	}
	out, err := s.readAll(ctx, c, from, limit)
	if err != nil {
		return nil, fmt.Errorf("esdb: read all from %s: %w", from, s.classify(ctx, c, err))
	}
	return out, nil
}

func (s *Store) readAll(ctx context.Context, c *conn, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	after := from
	page := s.cfg.ReadPage
	for {
		rs, err := callCtx(ctx, c, func() (*esdb.ReadStream, error) {
			return c.c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Forwards, From: allPosition(after)}, uint64(page))
		}, (*esdb.ReadStream).Close)
		if err != nil {
			return nil, err
		}
		scanned := 0
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rs.Close()
				return nil, err
			}
			scanned++
			e := ev.OriginalEvent()
			if e == nil {
				continue
			}
			p := position(e.Position)
			if !after.Less(p) {
				continue // the start position itself (ReadAll's From is inclusive)
			}
			after = p
			if !s.ours(e) {
				continue
			}
			out = append(out, s.convert(e))
			if len(out) == limit {
				rs.Close()
				return out, nil
			}
		}
		rs.Close()
		if scanned < page {
			return out, nil // reached the end of $all
		}
	}
}

// readEvents drains a read, returning its events in the order read; a stream that does
// not exist reads as empty.
func readEvents(ctx context.Context, c *conn, open func() (*esdb.ReadStream, error)) ([]*esdb.RecordedEvent, error) {
	rs, err := callCtx(ctx, c, open, (*esdb.ReadStream).Close)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if isCode(err, esdb.ErrorCodeResourceNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev.OriginalEvent())
	}
}

// tail returns up to count of the stream's last events, oldest first, and the revision
// of its last event (-1: no stream).
func (s *Store) tail(ctx context.Context, c *conn, full string, count int) ([]*esdb.RecordedEvent, int64, error) {
	evs, err := readEvents(ctx, c, func() (*esdb.ReadStream, error) {
		return c.c.ReadStream(ctx, full, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, uint64(count))
	})
	if err != nil || len(evs) == 0 {
		return nil, -1, err
	}
	last := int64(evs[0].EventNumber)
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs, last, nil
}

// slots reads count events of the stream from revision rev on.
func (s *Store) slots(ctx context.Context, c *conn, full string, rev uint64, count int) ([]*esdb.RecordedEvent, error) {
	return readEvents(ctx, c, func() (*esdb.ReadStream, error) {
		return c.c.ReadStream(ctx, full, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(rev)}, uint64(count))
	})
}

func (s *Store) convert(e *esdb.RecordedEvent) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID:            e.EventID,
		Stream:        strings.TrimPrefix(e.StreamID, s.cfg.StreamPrefix),
		StreamVersion: e.EventNumber + 1,
		Type:          e.EventType,
		Data:          e.Data,
		Metadata:      e.UserMetadata,
		Position:      eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		RecordedAt:    e.CreatedDate,
	}
}

// ours reports whether an event of $all belongs to this store's global order.
func (s *Store) ours(e *esdb.RecordedEvent) bool {
	return e != nil && !strings.HasPrefix(e.StreamID, "$") && !strings.HasPrefix(e.EventType, "$") &&
		strings.HasPrefix(e.StreamID, s.cfg.StreamPrefix)
}

func allPosition(p eventstore.Position) esdb.AllPosition {
	if p.IsZero() {
		return esdb.Start{}
	}
	return esdb.Position{Commit: p.Commit, Prepare: p.Prepare}
}

func position(p esdb.Position) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}
