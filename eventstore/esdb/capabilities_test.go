package esdb

import (
	"errors"
	"strings"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
)

// The backend declares that it cannot append to several streams atomically, and why;
// callers asking eventstore.Supports get ErrUnsupported with that reason.
func TestNoMultiStreamAppend(t *testing.T) {
	var s eventstore.Store = (*Store)(nil)
	if _, ok := s.(eventstore.MultiAppender); ok {
		t.Fatal("the EventStoreDB store claims eventstore.MultiAppender")
	}
	err := eventstore.Supports(s, eventstore.CapMultiStreamAppend)
	if !errors.Is(err, eventstore.ErrUnsupported) || !strings.Contains(err.Error(), "one stream per call") {
		t.Fatalf("Supports: %v, want ErrUnsupported with the declared reason", err)
	}
}

// The backend declares that event ids are unique per stream only: the conformance case
// for ids across streams skips with that reason instead of failing.
func TestEventIDsPerStreamOnly(t *testing.T) {
	var s eventstore.Store = (*Store)(nil)
	err := eventstore.Supports(s, eventstore.CapGlobalEventIDs)
	if !errors.Is(err, eventstore.ErrUnsupported) || !strings.Contains(err.Error(), "per stream only") {
		t.Fatalf("Supports: %v, want ErrUnsupported with the declared reason", err)
	}
}
