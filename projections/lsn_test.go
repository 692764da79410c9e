package projections

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReplayTarget(t *testing.T) {
	const blk, seg = 8192, 16 << 20
	for _, c := range []struct {
		name     string
		lsn      uint64
		want     uint64
		blk, seg uint64
	}{
		{"inside a page", 3*blk + 1000, 3*blk + 1000, blk, seg},
		{"a page boundary itself", 3 * blk, 3 * blk, blk, seg},
		{"past a short page header: nothing written on the page yet", 3*blk + walShortHeader, 3 * blk, blk, seg},
		{"past a long page header, first page of a segment", 5*seg + walLongHeader, 5 * seg, blk, seg},
		{"a record's tail after a long header's room on the first page", 5*seg + walShortHeader, 5*seg + walShortHeader, blk, seg},
		{"just past a short header: record data written", 3*blk + walShortHeader + 8, 3*blk + walShortHeader + 8, blk, seg},
		{"settings unknown", 3*blk + walShortHeader, 3*blk + walShortHeader, 0, 0},
	} {
		if got := replayTarget(c.lsn, c.blk, c.seg); got != c.want {
			t.Errorf("%s: replayTarget(%d) = %d, want %d", c.name, c.lsn, got, c.want)
		}
	}
}

// A fresh get is answered by a query that started after it was called, never by the one
// already in flight; callers waiting together share one query; a get that is not fresh
// joins the query in flight.
func TestCoalescerFreshness(t *testing.T) {
	var started atomic.Int64
	release := make(chan struct{})
	c := &coalescer[int64]{timeout: 10 * time.Second, fetch: func(context.Context) (int64, error) {
		n := started.Add(1)
		<-release
		return n, nil
	}}
	ctx := context.Background()
	first := make(chan int64)
	go func() { v, _ := c.get(ctx, true); first <- v }()
	waitFor(t, func() bool { return started.Load() == 1 })
	// Query 1 is in flight: fresh callers now must get query 2, a stale one query 1.
	var wg sync.WaitGroup
	fresh := make([]int64, 8)
	for i := range fresh {
		wg.Go(func() { fresh[i], _ = c.get(ctx, true) })
	}
	stale := make(chan int64)
	go func() { v, _ := c.get(ctx, false); stale <- v }()
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.running.waiters == 2 && c.pending != nil && c.pending.waiters == len(fresh)
	})
	release <- struct{}{} // query 1 ends
	if v := <-first; v != 1 {
		t.Fatalf("first caller got query %d, want 1", v)
	}
	if v := <-stale; v != 1 {
		t.Fatalf("a caller that is not fresh got query %d, want the one in flight (1)", v)
	}
	release <- struct{}{} // query 2 ends
	wg.Wait()
	for i, v := range fresh {
		if v != 2 {
			t.Fatalf("fresh caller %d got query %d, want 2 (started after it called)", i, v)
		}
	}
	if n := started.Load(); n != 2 {
		t.Fatalf("%d queries for 10 callers, want 2", n)
	}
	c.wait()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
