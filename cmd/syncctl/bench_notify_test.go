package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// paced sends exactly the calls asked for, each sequence number once, over all workers
// and never ahead of its schedule: 10 calls at 100/s take at least 90 ms.
func TestPacedKeepsItsSchedule(t *testing.T) {
	var mu sync.Mutex
	seen := map[int64]int{}
	at := map[int64]time.Duration{}
	start := time.Now()
	run := paced(context.Background(), 2, 100, stopRule{ops: 10}, func(_ context.Context, _ int, seq int64) error {
		mu.Lock()
		defer mu.Unlock()
		seen[seq]++
		at[seq] = time.Since(start)
		if seq == 3 {
			return errors.New("refused")
		}
		return nil
	})
	if run.sent != 9 || run.failed != 1 || run.firstErr == nil || len(seen) != 10 {
		t.Errorf("sent %d, failed %d (%v), calls %d", run.sent, run.failed, run.firstErr, len(seen))
	}
	if run.elapsed < 90*time.Millisecond {
		t.Errorf("10 calls at 100/s over 2 workers took %v: ahead of the schedule", run.elapsed)
	}
	var latest time.Duration
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("seq %d called %d times", seq, n)
		}
		latest = max(latest, at[seq])
	}
	if latest < 90*time.Millisecond {
		t.Errorf("the last call went out at %v, before its slot at 90 ms", latest)
	}
}

// The recorder times a commit once, from its send to the first notification of it;
// notifications of other commits and catch-up pages are not timed, a refused item
// fails the commit, and what never arrives is failed when the wait ends.
func TestNotifyRecorder(t *testing.T) {
	r := newNotifyRecorder()
	ws := uuid.New()
	note := func(id string, ok bool) client.Update {
		return client.Update{WorkspaceID: ws, Commit: &wire.CommitNotification{RequestID: id, Items: []wire.CommitInfo{{CommitSucceed: ok}}}}
	}
	for seq := range int64(4) {
		r.sending(r.id(seq))
	}
	r.forget(r.id(3)) // its publish failed: counted by paced, not here
	r.received(note(r.id(0), true))
	r.received(note(r.id(0), true)) // a repeated delivery
	r.received(note("someone-else", true))
	r.received(client.Update{WorkspaceID: ws, FromVersion: 1, ToVersion: 3})
	r.received(note(r.id(1), false))
	ctx := context.Background()
	run := r.wait(ctx, pacedRun{sent: 3, failed: 1, elapsed: time.Second}, 10*time.Millisecond)
	if len(run.latencies) != 1 || run.failed != 3 || run.firstErr == nil {
		t.Errorf("timed %d, failed %d (%v); want 1 timed, 3 failed (1 not sent, 1 refused, 1 never notified)", len(run.latencies), run.failed, run.firstErr)
	}
	// wait returns as soon as everything sent has arrived.
	r = newNotifyRecorder()
	r.sending(r.id(0))
	go r.received(note(r.id(0), true))
	if run := r.wait(ctx, pacedRun{sent: 1}, time.Minute); len(run.latencies) != 1 || run.failed != 0 {
		t.Errorf("timed %d, failed %d", len(run.latencies), run.failed)
	}
}
