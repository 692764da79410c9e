package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// plain is a store without the capability and without a declared reason.
type plain struct{ eventstore.Store }

func TestSupports(t *testing.T) {
	if err := eventstore.Supports(memstore.New(), eventstore.CapMultiStreamAppend); err != nil {
		t.Fatalf("memstore: %v", err)
	}
	err := eventstore.Supports(plain{memstore.New()}, eventstore.CapMultiStreamAppend)
	if !errors.Is(err, eventstore.ErrUnsupported) || !strings.Contains(err.Error(), "does not implement") {
		t.Fatalf("a store without MultiAppender: %v, want ErrUnsupported naming the type", err)
	}
	if err := eventstore.Supports(plain{memstore.New()}, eventstore.CapGlobalEventIDs); err != nil {
		t.Fatalf("global event ids are part of the base contract unless declared missing: %v", err)
	}
	if err := eventstore.Supports(memstore.New(), "teleportation"); !errors.Is(err, eventstore.ErrUnsupported) {
		t.Fatalf("an unknown capability: %v, want ErrUnsupported", err)
	}
}
