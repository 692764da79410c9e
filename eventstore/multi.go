package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// MultiAppender is an optional interface of a Store that appends to several streams
// atomically: all of the appends or none of them. Ask for it with Supports (or a type
// assertion); a store without it cannot do the move of a share (PROTOCOL.md §8) safely.
type MultiAppender interface {
	// AppendMulti performs every append of appends, in one transaction, or none. It
	// returns one result per append, in the same order, or an error and nothing written:
	//
	//   - bad input (an append Append would refuse, a stream that appears twice, a
	//     record id repeated across appends, no appends at all): ErrInvalidAppend or
	//     ErrRecordTooLarge;
	//   - an expected version that does not hold: a *WrongVersionError (errors.As) of
	//     the first such append, in the order given;
	//   - a record id already stored: if every append is a retry of the same append of
	//     one earlier successful AppendMulti (each as Append's idempotency describes, all
	//     from that one call), the original results, each with Duplicate set, whatever the
	//     expected versions; any other reuse fails with ErrInvalidAppend (never a partial
	//     write, never a partial duplicate);
	//   - ErrClosed, ctx ending, a lost connection (ErrTransient: it may have committed;
	//     a retry with the same record ids is safe).
	//
	// The events take their streams' next versions and one place in the global order:
	// they become visible to ReadAll and Subscribe together, adjacent (no other
	// append's event comes between them), stream by stream in the order of appends and
	// each stream's records in order. The locking and never-skip rules are those of
	// Append.
	AppendMulti(ctx context.Context, appends []StreamAppend) ([]AppendResult, error)
}

// Capability names an optional part of the storage contract.
type Capability string

// CapMultiStreamAppend is MultiAppender: an atomic append to several streams.
const CapMultiStreamAppend Capability = "multi-stream append"

// CapGlobalEventIDs is the rule that a record id is stored at most once in the whole
// store: an append reusing an id already stored in another stream is refused. It is part
// of the contract unless a store declares it missing (Limited); without it, ids are
// unique per stream only, and a retried append is recognised only on its own stream
// (which is how every caller here retries).
const CapGlobalEventIDs Capability = "event ids unique across streams"

// Limited is implemented by stores that declare which capabilities they lack and why.
type Limited interface {
	// Unsupported returns, for each capability the store lacks, the reason.
	Unsupported() map[Capability]string
}

// ErrUnsupported is returned (wrapped, with the reason) by Supports and by callers that
// need a capability the store lacks.
var ErrUnsupported = errors.New("eventstore: capability not supported by this store")

// Supports returns nil if s has capability c, and otherwise an error wrapping
// ErrUnsupported that names the store and says why (its Limited reason, if it declares
// one).
func Supports(s Store, c Capability) error {
	ok := false
	switch c {
	case CapMultiStreamAppend:
		_, ok = s.(MultiAppender)
	case CapGlobalEventIDs: // part of the base contract: present unless declared missing
		ok = true
		if l, isLimited := s.(Limited); isLimited {
			_, missing := l.Unsupported()[c]
			ok = !missing
		}
	}
	if ok {
		return nil
	}
	why := fmt.Sprintf("%T does not implement it", s)
	if l, isLimited := s.(Limited); isLimited {
		if r, declared := l.Unsupported()[c]; declared {
			why = r
		}
	}
	return fmt.Errorf("%w: %s: %s", ErrUnsupported, c, why)
}

// ValidateMulti checks the backend-independent rules of an AppendMulti: each append as
// ValidateAppend, at least one append, each stream once, each record id once across all.
func ValidateMulti(appends []StreamAppend) error {
	if len(appends) == 0 {
		return fmt.Errorf("%w: no appends", ErrInvalidAppend)
	}
	streams := make(map[string]bool, len(appends))
	ids := map[uuid.UUID]string{}
	for i, a := range appends {
		if err := ValidateAppend(a.Stream, a.Expected, a.Records); err != nil {
			return fmt.Errorf("append %d (%s): %w", i, a.Stream, err)
		}
		if streams[a.Stream] {
			return fmt.Errorf("%w: stream %s appears more than once", ErrInvalidAppend, a.Stream)
		}
		streams[a.Stream] = true
		for _, r := range a.Records {
			if other, ok := ids[r.ID]; ok {
				return fmt.Errorf("%w: record id %s in the appends to %s and %s", ErrInvalidAppend, r.ID, other, a.Stream)
			}
			ids[r.ID] = a.Stream
		}
	}
	return nil
}
