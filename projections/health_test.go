package projections

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// TestHealthyFollowsLeadership: a projector stuck on failing batches is reported while
// it holds the role; once it lost the role it is a standby and healthy, whatever
// happened in its term; and when it gets the role back with nothing pending, its old
// failures are forgotten (/readyz must not fail on a healthy standby, or on a new term).
func TestHealthyFollowsLeadership(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 31)
	e.append(t, g.history(1, 2, 10))
	var blocked atomic.Bool
	blocked.Store(true)
	const stall = 100 * time.Millisecond
	p1 := e.projector(t, ModelWorkspaces, func(c *Config) {
		c.StallAfter = stall
		c.afterApply = func() error {
			if blocked.Load() {
				return eventstore.TransientError(errors.New("connection lost"))
			}
			return nil
		}
	})
	stop1 := run(t, p1.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if p1.Healthy() == nil {
			return errors.New("still healthy")
		}
		return nil
	})
	if err := stop1(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v", err)
	}
	if err := p1.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v after the projector lost the role: a standby is healthy", err)
	}
	// Another instance takes over and catches up.
	blocked.Store(false)
	p2 := e.projector(t, ModelWorkspaces, nil)
	stop2 := run(t, p2.Run)
	e.caughtUp(t, ModelWorkspaces)
	if err := stop2(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v", err)
	}
	// p1 gets the role back with nothing pending: its earlier failures are long past
	// StallAfter, and no batch will come to clear them.
	run(t, p1.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if !p1.Status().Active {
			return errors.New("not active yet")
		}
		return nil
	})
	if err := p1.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v in a new term with nothing pending", err)
	}
}

// TestCancelledBatchIsNoFailure: a batch cut short because the context ended (the role
// was lost, or shutdown) is not a failure of the model and does not start the stall
// clock.
func TestCancelledBatchIsNoFailure(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 32)
	e.append(t, g.history(1, 1, 3))
	var evs []eventstore.RecordedEvent
	testenv.Eventually(t, 20*time.Second, func() error {
		var err error
		evs, err = e.store.ReadAll(context.Background(), eventstore.Start, 100)
		if err == nil && len(evs) == 0 {
			err = errors.New("no event visible yet")
		}
		return err
	})
	p := e.projector(t, ModelWorkspaces, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.applyBatch(ctx, eventstore.Start, evs); err == nil {
		t.Fatal("a batch applied with an ended context")
	}
	p.health.mu.Lock()
	stuck, last := p.health.stuckSince, p.health.lastErr
	p.health.mu.Unlock()
	if !stuck.IsZero() || last != nil {
		t.Fatalf("health after a cancelled batch: stuck since %v, last error %v; want no failure", stuck, last)
	}
}
