package memstore

import (
	"context"
	"fmt"

	"github.com/stacksync-es/syncservice/eventstore"
)

var _ eventstore.BatchAppender = (*Store)(nil)

// AppendBatch implements eventstore.BatchAppender: the appends that succeed become
// visible together, in one transaction (one Position.Commit).
func (s *Store) AppendBatch(ctx context.Context, appends []eventstore.StreamAppend) []eventstore.BatchResult {
	results := make([]eventstore.BatchResult, len(appends))
	fail := func(err error) []eventstore.BatchResult {
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = fmt.Errorf("batch append to %s: %w", appends[i].Stream, err)
			}
		}
		return results
	}
	var run []int
	for i, err := range eventstore.ValidateBatch(appends) {
		if err != nil {
			results[i].Err = fmt.Errorf("batch append to %s: %w", appends[i].Stream, err)
			continue
		}
		run = append(run, i)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Wait until no held append touches the batch, then do all of it without
	// releasing the lock.
	for {
		if s.closed {
			return fail(eventstore.ErrClosed)
		}
		busy := false
		for _, i := range run {
			busy = busy || s.locked[appends[i].Stream]
			for _, r := range appends[i].Records {
				busy = busy || s.pending[r.ID]
			}
		}
		if !busy {
			break
		}
		s.cond.Wait()
	}
	s.lastTx++
	tx := s.lastTx
	for _, i := range run {
		a := appends[i]
		res, dup, err := s.duplicateLocked(a.Stream, a.Records)
		if dup || err != nil {
			results[i] = eventstore.BatchResult{Result: res, Err: err}
			continue
		}
		version := uint64(len(s.streams[a.Stream]))
		if want, ok := a.Expected.Version(); ok && want != version {
			results[i].Err = &eventstore.WrongVersionError{Stream: a.Stream, Expected: a.Expected, Actual: version}
			continue
		}
		evs := s.buildLocked(a.Stream, version, tx, a.Records)
		s.commitLocked(a.Stream, evs)
		last := evs[len(evs)-1]
		results[i].Result = eventstore.AppendResult{StreamVersion: last.StreamVersion, Position: last.Position}
	}
	return results
}
