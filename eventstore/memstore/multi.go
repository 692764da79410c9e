package memstore

import (
	"context"
	"fmt"

	"github.com/stacksync-es/syncservice/eventstore"
)

var _ eventstore.MultiAppender = (*Store)(nil)

// AppendMulti implements eventstore.MultiAppender: every check is made before anything
// is written, under the store's lock, and the events are committed in one transaction
// (one Position.Commit).
func (s *Store) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	op := fmt.Sprintf("multi append to %d streams", len(appends))
	if err := eventstore.ValidateMulti(appends); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.idleLocked(appends) {
		if s.closed {
			break
		}
		s.cond.Wait()
	}
	if s.closed {
		return nil, fmt.Errorf("%s: %w", op, eventstore.ErrClosed)
	}
	if res, dup, err := s.multiDuplicateLocked(appends); dup || err != nil {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		return res, nil
	}
	for _, a := range appends {
		version := uint64(len(s.streams[a.Stream]))
		if want, ok := a.Expected.Version(); ok && want != version {
			return nil, fmt.Errorf("%s: %w", op, &eventstore.WrongVersionError{Stream: a.Stream, Expected: a.Expected, Actual: version})
		}
	}
	s.lastTx++
	tx := s.lastTx
	results := make([]eventstore.AppendResult, len(appends))
	for i, a := range appends {
		evs := s.buildLocked(a.Stream, uint64(len(s.streams[a.Stream])), tx, a.Records)
		s.commitLocked(a.Stream, evs)
		last := evs[len(evs)-1]
		results[i] = eventstore.AppendResult{StreamVersion: last.StreamVersion, Position: last.Position}
	}
	return results, nil
}

// idleLocked reports whether no held append touches the appends' streams or record ids.
// s.mu must be held.
func (s *Store) idleLocked(appends []eventstore.StreamAppend) bool {
	for _, a := range appends {
		if s.locked[a.Stream] {
			return false
		}
		for _, r := range a.Records {
			if s.pending[r.ID] {
				return false
			}
		}
	}
	return true
}

// multiDuplicateLocked reports whether appends repeat one earlier AppendMulti: every
// append a duplicate of its own, all stored in one transaction. No record stored: not a
// duplicate. Anything else is an ErrInvalidAppend. s.mu must be held.
func (s *Store) multiDuplicateLocked(appends []eventstore.StreamAppend) ([]eventstore.AppendResult, bool, error) {
	stored := 0
	for _, a := range appends {
		for _, r := range a.Records {
			if _, ok := s.byID[r.ID]; ok {
				stored++
			}
		}
	}
	if stored == 0 {
		return nil, false, nil
	}
	results := make([]eventstore.AppendResult, len(appends))
	for i, a := range appends {
		res, dup, err := s.duplicateLocked(a.Stream, a.Records)
		if err != nil {
			return nil, false, err
		}
		if !dup {
			return nil, false, fmt.Errorf("%w: the appends to other streams were stored before, the one to %s was not",
				eventstore.ErrInvalidAppend, a.Stream)
		}
		if i > 0 && res.Position.Commit != results[0].Position.Commit {
			return nil, false, fmt.Errorf("%w: the appends to %s and %s were stored by different calls",
				eventstore.ErrInvalidAppend, appends[0].Stream, a.Stream)
		}
		results[i] = res
	}
	return results, true, nil
}
