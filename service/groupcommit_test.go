package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// countingBatcher counts the batches and their sizes, and holds each batch until
// released so that appends queue up behind it.
type countingBatcher struct {
	eventstore.BatchAppender
	batches atomic.Int64
	largest atomic.Int64
	gate    chan struct{}
}

func (c *countingBatcher) AppendBatch(ctx context.Context, a []eventstore.StreamAppend) []eventstore.BatchResult {
	c.batches.Add(1)
	for {
		l := c.largest.Load()
		if int64(len(a)) <= l || c.largest.CompareAndSwap(l, int64(len(a))) {
			break
		}
	}
	if c.gate != nil {
		<-c.gate
	}
	return c.BatchAppender.AppendBatch(ctx, a)
}

func rec() []eventstore.Record {
	return []eventstore.Record{{ID: uuid.New(), Type: "T", Data: []byte("{}")}}
}

// Appends to different streams that queue behind an in-flight transaction share the
// next one; each gets its own result, and one that fails fails alone.
func TestGroupAppenderBatchesAndSeparatesResults(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	cb := &countingBatcher{BatchAppender: store, gate: make(chan struct{})}
	g := &groupAppender{store: cb, maxFlushers: 1, maxBatch: 64, timeout: 10 * time.Second}
	ctx := context.Background()

	// The first append opens a transaction and is held there.
	first := make(chan error, 1)
	go func() { _, err := g.append(ctx, "s-first", eventstore.NoStream(), rec()); first <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for cb.batches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Twenty more queue up meanwhile, one of them with a wrong expected version, two on
	// one stream.
	type out struct {
		name string
		res  eventstore.AppendResult
		err  error
	}
	outs := make(chan out, 21)
	var wg sync.WaitGroup
	for i := range 20 {
		name := fmt.Sprintf("s-%d", i)
		exp := eventstore.NoStream()
		switch i {
		case 3:
			exp = eventstore.Any() // s-3 gets a second append below, in either order
		case 7:
			exp = eventstore.Exact(5)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := g.append(ctx, name, exp, rec())
			outs <- out{name, r, err}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := g.append(ctx, "s-3", eventstore.Any(), rec())
		outs <- out{"s-3 again", r, err}
	}()
	for g.queued() < 21 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(cb.gate) // release every transaction
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(outs)
	s3 := map[uint64]bool{}
	for o := range outs {
		switch {
		case o.name == "s-7":
			if !errors.Is(o.err, eventstore.ErrWrongVersion) {
				t.Errorf("s-7: %v, want wrong version", o.err)
			}
		case o.err != nil:
			t.Errorf("%s: %v", o.name, o.err)
		case o.name == "s-3" || o.name == "s-3 again":
			s3[o.res.StreamVersion] = true
		case o.res.StreamVersion != 1:
			t.Errorf("%s landed at version %d", o.name, o.res.StreamVersion)
		}
	}
	if !s3[1] || !s3[2] {
		t.Errorf("the two appends to s-3 landed at %v, want 1 and 2 (never in one batch)", s3)
	}
	if n := cb.batches.Load(); n > 3 {
		t.Errorf("%d transactions for 22 appends queued behind one: no grouping", n)
	}
	if l := cb.largest.Load(); l < 10 {
		t.Errorf("largest batch %d", l)
	}
	// A flusher hands its results out before it leaves: wait for it to go.
	for g.flushersNow() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if g.flushersNow() != 0 {
		t.Errorf("%d flushers left running", g.flushersNow())
	}
}

func (g *groupAppender) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

func (g *groupAppender) flushersNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flushers
}

// An append whose caller gives up before it is taken into a transaction is withdrawn.
func TestGroupAppenderWithdrawsAbandonedAppends(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	cb := &countingBatcher{BatchAppender: store, gate: make(chan struct{})}
	g := &groupAppender{store: cb, maxFlushers: 1, maxBatch: 64, timeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { _, err := g.append(context.Background(), "held", eventstore.NoStream(), rec()); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for cb.batches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.append(ctx, "abandoned", eventstore.NoStream(), rec()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned append: %v", err)
	}
	close(cb.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := store.StreamVersion(context.Background(), "abandoned"); err != nil || v != 0 {
		t.Fatalf("an abandoned append was written: version %d, %v", v, err)
	}
}
