package eventstore

import (
	"context"
	"fmt"
)

// StreamAppend is one append of a batch: what Store.Append takes, as a value.
type StreamAppend struct {
	Stream   string
	Expected ExpectedVersion
	Records  []Record
}

// BatchResult is the outcome of one StreamAppend of a batch: Result when Err is nil.
type BatchResult struct {
	Result AppendResult
	Err    error
}

// BatchAppender is an optional interface of a Store that writes appends to different
// streams in one transaction: group commit, one durable commit for many appends.
// Callers check for it with a type assertion and fall back to Append.
type BatchAppender interface {
	// AppendBatch performs each append as Append would and returns one result per
	// append, in the same order. The appends that succeed are committed together,
	// atomically. An append that fails (invalid input, wrong expected version, a record
	// id already stored) fails alone and writes nothing; a retry of an earlier append
	// gets the original result with Duplicate set, as with Append. A stream may appear
	// only once per batch: later appends to it fail with ErrInvalidAppend. If the
	// transaction itself fails (ErrClosed, a lost connection, ctx ending), every append
	// that had not already failed alone gets that error; a transient one may or may not
	// have committed, and a retry with the same record ids is safe.
	AppendBatch(ctx context.Context, appends []StreamAppend) []BatchResult
}

// ValidateBatch applies ValidateAppend to each append and rejects every later append to a
// stream already in the batch. It returns one error (or nil) per append.
func ValidateBatch(appends []StreamAppend) []error {
	errs := make([]error, len(appends))
	seen := make(map[string]bool, len(appends))
	for i, a := range appends {
		if err := ValidateAppend(a.Stream, a.Expected, a.Records); err != nil {
			errs[i] = err
			continue
		}
		if seen[a.Stream] {
			errs[i] = fmt.Errorf("%w: stream %s appears more than once in one batch", ErrInvalidAppend, a.Stream)
			continue
		}
		seen[a.Stream] = true
	}
	return errs
}
