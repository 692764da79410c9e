// Package storetest owns the conformance suite of the eventstore contract: every backend
// runs Run against a real server (or, for memstore, in memory) and must pass all of it.
//
// The suite only uses the eventstore API, plus the optional Holder interface that lets a
// backend hold an append transaction open so that the never-skip rule of the global order
// can be tested deterministically. It must never import the rest of the project.
//
// The cases are grouped by the part of the contract they check: append.go (Append and
// expected versions), idempotency.go (retried batches), read.go (ReadStream, ReadAll and
// the never-skip rule), bounded.go (eventstore.BoundedReader), lag.go (CountAfter),
// order.go (stream order within the global order), subscribe.go (Subscribe), batch.go
// (eventstore.BatchAppender), multi.go (eventstore.MultiAppender), input.go (invalid input and the record size limit) and
// close.go (Close); helpers.go holds what they share.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Holder is implemented by backends that can start an append and leave its transaction
// uncommitted, so that a later append commits first. The suite uses it to prove that
// ReadAll and Subscribe never skip an event that commits out of order.
//
// HoldOpenAppend appends rec to stream (expected version Any) and returns once the
// record has taken its place in the global order but before it is committed. commit
// commits it. The held append may block other appends to the same stream; the suite only
// appends to other streams while one is held.
type Holder interface {
	HoldOpenAppend(ctx context.Context, stream string, rec eventstore.Record) (commit func() error, err error)
}

// visibleTimeout bounds how long the suite waits for committed events to become visible
// to global readers (a backend may hold them back while older transactions are open,
// including unrelated ones on a shared server).
const visibleTimeout = 20 * time.Second

// Run runs the conformance suite. newStore must return a fresh, empty store for each
// subtest; Run closes it when the subtest ends. Tests of the optional interfaces
// (Holder, eventstore.BatchAppender, eventstore.BoundedReader) skip for stores that do not implement them,
// those of eventstore.MultiAppender and of eventstore.CapGlobalEventIDs with the reason the
// store declares (eventstore.Supports);
// CountAfter runs for every store (eventstore.LagReader, or the bounded-read fallback).
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"AppendReadRoundTrip", testAppendReadRoundTrip},
		{"ExpectedVersions", testExpectedVersions},
		{"WrongVersionWritesNothing", testWrongVersionWritesNothing},
		{"ConcurrentSameVersionOneWinner", testConcurrentSameVersion},
		{"ConcurrentAppendersGapFree", testConcurrentAppendersGapFree},
		{"IdempotentAppend", testIdempotentAppend},
		{"IdempotencyConflicts", testIdempotencyConflicts},
		{"IdempotencyAcrossStreams", testIdempotencyAcrossStreams},
		{"ReadStreamPaging", testReadStreamPaging},
		{"ReadAllOrderAndPaging", testReadAllOrderAndPaging},
		{"ReadStreamBounded", testReadStreamBounded},
		{"ReadAllBounded", testReadAllBounded},
		{"CountAfter", testCountAfter},
		{"ReadAllNeverSkipsHeldTransaction", testReadAllHeldTransaction},
		{"ReadAllNeverSkipsUnderConcurrency", testReadAllConcurrentWriters},
		{"GlobalOrderKeepsStreamOrder", testGlobalOrderKeepsStreamOrder},
		{"SubscribeCatchUpThenLive", testSubscribeCatchUpThenLive},
		{"SubscribeResumeFromCheckpoint", testSubscribeResume},
		{"SubscribeNeverSkipsHeldTransaction", testSubscribeHeldTransaction},
		{"SubscribeHandlerErrorStops", testSubscribeHandlerError},
		{"SubscribeCancelReturnsPromptly", testSubscribeCancel},
		{"BadInput", testBadInput},
		{"RecordSizeLimit", testRecordSizeLimit},
		{"Closed", testClosed},
		{"BatchMixedOutcomes", testBatchMixedOutcomes},
		{"BatchRetryIsDuplicate", testBatchRetryIsDuplicate},
		{"BatchConcurrentNoDeadlock", testBatchConcurrentNoDeadlock},
		{"BatchClosed", testBatchClosed},
		{"MultiRoundTrip", testMultiRoundTrip},
		{"MultiWrongVersionWritesNothing", testMultiWrongVersionWritesNothing},
		{"MultiConcurrentWriterFailsAll", testMultiConcurrentWriterFailsAll},
		{"MultiRacingWritersAllOrNothing", testMultiRacingWritersAllOrNothing},
		{"MultiIdempotency", testMultiIdempotency},
		{"MultiBadInput", testMultiBadInput},
		{"MultiWithBatchesNoDeadlock", testMultiWithBatchesNoDeadlock},
		{"MultiClosed", testMultiClosed},
		{"MultiLargeRecords", testMultiLargeRecords},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}
