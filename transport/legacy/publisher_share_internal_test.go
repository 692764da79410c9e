package legacy

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// A share whose move-in is split in parts gives the owner one proposal: the first
// part's. A later part publishes nothing and reads nothing (this publisher has no store
// nor channel: touching either would panic).
func TestLaterMoveInPartGivesNoProposal(t *testing.T) {
	part := domain.ItemsMovedIn{WorkspaceID: uuid.New(), WorkspaceVersion: 1, RequestID: "share", Part: 1, Parts: 2}
	typ, data, err := domain.Encode(part)
	if err != nil {
		t.Fatal(err)
	}
	c, err := (&Publisher{}).publishProposal(context.Background(), nil, eventstore.RecordedEvent{ID: uuid.New(), Type: typ, Data: data}, nil)
	if c != nil || err != nil {
		t.Fatalf("a later part: %v, %v", c, err)
	}
}
