// Package memstore owns an in-memory eventstore.Store for unit tests. It passes the same
// conformance suite (eventstore/storetest) as the real backends, including the global-order
// visibility rule: an append held open with HoldOpenAppend keeps every later commit out of
// ReadAll and Subscribe until it commits, as a PostgreSQL transaction would.
//
// It keeps everything in process memory and loses it on exit: it must never be used as
// the store of a running service, and it must never import the rest of the project.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// subscribeBatch is the most events Subscribe hands to one call of its handler.
const subscribeBatch = 256

// Store is an in-memory eventstore.Store. The zero value is not usable; call New.
type Store struct {
	mu     sync.Mutex
	cond   *sync.Cond // broadcast when a held append ends or the store closes
	closed bool
	done   chan struct{} // closed by Close
	wake   chan struct{} // closed and replaced on every commit

	lastTx  uint64              // Position.Commit of the latest transaction begun
	lastPos uint64              // Position.Prepare of the latest event
	open    map[uint64]bool     // transactions begun and not yet committed (held appends)
	locked  map[string]bool     // streams with a held append
	pending map[uuid.UUID]bool  // record ids of held appends
	streams map[string][]*event // committed events per stream, by version
	global  []*event            // committed events ordered by Position
	byID    map[uuid.UUID]*event
}

type event struct {
	eventstore.RecordedEvent
	batchLen int // records in the append that wrote this event
}

var _ eventstore.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	s := &Store{
		done:    make(chan struct{}),
		wake:    make(chan struct{}),
		open:    map[uint64]bool{},
		locked:  map[string]bool{},
		pending: map[uuid.UUID]bool{},
		streams: map[string][]*event{},
		byID:    map[uuid.UUID]*event{},
	}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Append implements eventstore.Store. It waits while the stream has a held append.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, records ...eventstore.Record) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, records); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitLocked(stream, records); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	if res, dup, err := s.duplicateLocked(stream, records); dup || err != nil {
		return res, err
	}
	version := uint64(len(s.streams[stream]))
	if want, ok := expected.Version(); ok && want != version {
		return eventstore.AppendResult{}, &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: version}
	}
	s.lastTx++
	evs := s.buildLocked(stream, version, s.lastTx, records)
	s.commitLocked(stream, evs)
	last := evs[len(evs)-1]
	return eventstore.AppendResult{StreamVersion: last.StreamVersion, Position: last.Position}, nil
}

// HoldOpenAppend implements storetest.Holder: rec takes its place in the global order
// now and becomes visible when commit is called. Until then later commits stay invisible
// to ReadAll and Subscribe, and appends to stream wait.
func (s *Store) HoldOpenAppend(ctx context.Context, stream string, rec eventstore.Record) (commit func() error, err error) {
	records := []eventstore.Record{rec}
	if err := eventstore.ValidateAppend(stream, eventstore.Any(), records); err != nil {
		return nil, fmt.Errorf("hold append to %s: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitLocked(stream, records); err != nil {
		return nil, fmt.Errorf("hold append to %s: %w", stream, err)
	}
	if _, dup, err := s.duplicateLocked(stream, records); dup || err != nil {
		return nil, fmt.Errorf("hold append to %s: record %s already stored (%v)", stream, rec.ID, err)
	}
	s.lastTx++
	tx := s.lastTx
	evs := s.buildLocked(stream, uint64(len(s.streams[stream])), tx, records)
	s.open[tx] = true
	s.locked[stream] = true
	s.pending[rec.ID] = true
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.open, tx)
			delete(s.locked, stream)
			delete(s.pending, rec.ID)
			s.cond.Broadcast()
			if s.closed {
				err = eventstore.ErrClosed
				return
			}
			s.commitLocked(stream, evs)
		})
		return err
	}, nil
}

// waitLocked waits until neither stream nor any of the record ids belongs to a held
// append. s.mu must be held.
func (s *Store) waitLocked(stream string, records []eventstore.Record) error {
	for {
		if s.closed {
			return eventstore.ErrClosed
		}
		busy := s.locked[stream]
		for _, r := range records {
			busy = busy || s.pending[r.ID]
		}
		if !busy {
			return nil
		}
		s.cond.Wait()
	}
}

// duplicateLocked reports whether records were appended before to stream as one
// append, in which case it returns the original result. Any other reuse of a stored id
// is an error. s.mu must be held.
func (s *Store) duplicateLocked(stream string, records []eventstore.Record) (eventstore.AppendResult, bool, error) {
	first, ok := s.byID[records[0].ID]
	if !ok {
		for _, r := range records[1:] {
			if e, ok := s.byID[r.ID]; ok {
				return eventstore.AppendResult{}, false, idConflict(stream, r.ID, e)
			}
		}
		return eventstore.AppendResult{}, false, nil
	}
	if first.Stream != stream || first.batchLen != len(records) {
		return eventstore.AppendResult{}, false, idConflict(stream, first.ID, first)
	}
	evs := s.streams[stream]
	for i, r := range records {
		v := first.StreamVersion + uint64(i)
		if v > uint64(len(evs)) || evs[v-1].ID != r.ID || evs[v-1].Position.Commit != first.Position.Commit {
			return eventstore.AppendResult{}, false, idConflict(stream, r.ID, s.byID[r.ID])
		}
	}
	last := evs[first.StreamVersion+uint64(len(records))-2]
	return eventstore.AppendResult{StreamVersion: last.StreamVersion, Position: last.Position, Duplicate: true}, true, nil
}

func idConflict(stream string, id uuid.UUID, stored *event) error {
	if stored == nil {
		return fmt.Errorf("append to %s: %w: record id %s already stored, not as this same append", stream, eventstore.ErrInvalidAppend, id)
	}
	return fmt.Errorf("append to %s: %w: record id %s already stored at %s@%d, not as this same append",
		stream, eventstore.ErrInvalidAppend, id, stored.Stream, stored.StreamVersion)
}

// buildLocked makes the events of one append in transaction tx. s.mu must be held.
func (s *Store) buildLocked(stream string, version, tx uint64, records []eventstore.Record) []*event {
	now := time.Now()
	evs := make([]*event, len(records))
	for i, r := range records {
		s.lastPos++
		evs[i] = &event{
			RecordedEvent: eventstore.RecordedEvent{
				ID:            r.ID,
				Stream:        stream,
				StreamVersion: version + uint64(i) + 1,
				Type:          r.Type,
				Data:          clone(r.Data),
				Metadata:      clone(r.Metadata),
				Position:      eventstore.Position{Commit: tx, Prepare: s.lastPos},
				RecordedAt:    now,
			},
			batchLen: len(records),
		}
	}
	return evs
}

// commitLocked makes evs visible and wakes subscribers. s.mu must be held.
func (s *Store) commitLocked(stream string, evs []*event) {
	s.streams[stream] = append(s.streams[stream], evs...)
	for _, e := range evs {
		s.byID[e.ID] = e
	}
	at := sort.Search(len(s.global), func(i int) bool { return evs[0].Position.Less(s.global[i].Position) })
	s.global = append(s.global[:at], append(evs, s.global[at:]...)...)
	close(s.wake)
	s.wake = make(chan struct{})
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read stream %s: limit %d is not positive", stream, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("read stream %s: %w", stream, eventstore.ErrClosed)
	}
	if from == 0 {
		from = 1
	}
	evs := s.streams[stream]
	if from > uint64(len(evs)) {
		return nil, nil
	}
	evs = evs[from-1:]
	if len(evs) > limit {
		evs = evs[:limit]
	}
	return copyOut(evs), nil
}

// StreamVersion implements eventstore.Store.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("stream version %s: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("stream version %s: %w", stream, eventstore.ErrClosed)
	}
	return uint64(len(s.streams[stream])), nil
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all from %s: limit %d is not positive", from, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read all from %s: %w", from, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("read all from %s: %w", from, eventstore.ErrClosed)
	}
	evs, _ := s.readAllLocked(from, limit)
	return evs, nil
}

// readAllLocked returns the visible events after from: those of transactions older than
// every open one. s.mu must be held.
func (s *Store) readAllLocked(from eventstore.Position, limit int) ([]eventstore.RecordedEvent, chan struct{}) {
	horizon := s.lastTx + 1
	for tx := range s.open {
		horizon = min(horizon, tx)
	}
	at := sort.Search(len(s.global), func(i int) bool { return from.Less(s.global[i].Position) })
	var out []*event
	for _, e := range s.global[at:] {
		if e.Position.Commit >= horizon || len(out) == limit {
			break
		}
		out = append(out, e)
	}
	return copyOut(out), s.wake
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, handle func(ctx context.Context, batch []eventstore.RecordedEvent) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return fmt.Errorf("subscribe from %s: %w", from, eventstore.ErrClosed)
		}
		batch, wake := s.readAllLocked(from, subscribeBatch)
		s.mu.Unlock()
		if len(batch) > 0 {
			if err := handle(ctx, batch); err != nil {
				return err
			}
			from = batch[len(batch)-1].Position
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("subscribe from %s: %w", from, eventstore.ErrClosed)
		case <-wake:
		}
	}
}

// Close implements eventstore.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.cond.Broadcast()
	}
	return nil
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func copyOut(evs []*event) []eventstore.RecordedEvent {
	if len(evs) == 0 {
		return nil
	}
	out := make([]eventstore.RecordedEvent, len(evs))
	for i, e := range evs {
		out[i] = e.RecordedEvent
		out[i].Data = clone(e.Data)
		out[i].Metadata = clone(e.Metadata)
	}
	return out
}

var _ eventstore.BoundedReader = (*Store)(nil)

// ReadAllBytes implements eventstore.BoundedReader.
func (s *Store) ReadAllBytes(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("read all from %s: byte bound %d is not positive", from, maxBytes)
	}
	evs, err := s.ReadAll(ctx, from, limit)
	if err != nil {
		return nil, err
	}
	return eventstore.TrimToBytes(evs, maxBytes), nil
}

// ReadStreamBytes implements eventstore.BoundedReader.
func (s *Store) ReadStreamBytes(ctx context.Context, stream string, from uint64, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("read stream %s: byte bound %d is not positive", stream, maxBytes)
	}
	evs, err := s.ReadStream(ctx, stream, from, limit)
	if err != nil {
		return nil, err
	}
	return eventstore.TrimToBytes(evs, maxBytes), nil
}
