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
