package follow

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// A follower (notifier or binder) is healthy while it is a standby, whatever its last
// term saw, and a new term starts its health afresh: a stale pending event, failure or
// progress time of an earlier term never makes it unhealthy before it has been stuck
// for StallAfter in this one.
func TestFollowerHealthFollowsLeadership(t *testing.T) {
	f, err := New(Config{Name: "notifier", Reader: StoreReader{}, StallAfter: 50 * time.Millisecond,
		Load: func(context.Context) (eventstore.Position, error) { return eventstore.Start, nil }})
	if err != nil {
		t.Fatal(err)
	}
	f.SetLeader(true)
	// The term stalls: an event pending, a failure, no progress for longer than StallAfter.
	f.mu.Lock()
	f.oldest = time.Now().Add(-time.Hour)
	f.progress = time.Now().Add(-time.Hour)
	f.status.Position = eventstore.Position{Commit: 7, Prepare: 1}
	f.mu.Unlock()
	f.Failed(errors.New("channel closed"))
	if err := f.Healthy("notifier"); err == nil {
		t.Fatal("a leader stalled for an hour with events pending is healthy")
	}
	f.SetLeader(false)
	if err := f.Healthy("notifier"); err != nil {
		t.Fatalf("healthy() = %v for a standby", err)
	}
	f.SetLeader(true)
	if err := f.Healthy("notifier"); err != nil {
		t.Fatalf("healthy() = %v at the start of a new term", err)
	}
	if st := f.Status(); !st.Leader || st.Lag != 0 || st.HeldByHorizon {
		t.Fatalf("status %+v at the start of a new term, want a leader with no lag", st)
	}
}
