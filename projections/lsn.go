package projections

import (
	"context"
	"sync"
	"time"
)

// WAL positions (LSNs) as the byte offsets PostgreSQL's pg_lsn stands for.

// Sizes of a WAL page header (PostgreSQL's SizeOfXLogShortPHD and SizeOfXLogLongPHD, the
// long one on the first page of a segment).
const (
	walShortHeader = 24
	walLongHeader  = 40
)

// replayTarget turns the primary's insert position into the position a standby's replay
// must reach to have every record inserted before it. The two are the same, except at a
// page boundary: there pg_current_wal_insert_lsn() points past the next page's header
// (where the next record will start), while a standby that replayed every record reports
// the boundary itself (the end of the last record). Without this a standby of an idle
// primary could never be seen as caught up. blockSize and segmentSize are the server's
// wal_block_size and wal_segment_size; zero leaves lsn as it is.
func replayTarget(lsn, blockSize, segmentSize uint64) uint64 {
	if blockSize == 0 || segmentSize == 0 {
		return lsn
	}
	hdr := uint64(walShortHeader)
	if lsn%segmentSize < blockSize {
		hdr = walLongHeader
	}
	if lsn%blockSize == hdr {
		return lsn - hdr
	}
	return lsn
}

// coalescer runs one query at a time for any number of callers: a caller joins the query
// in flight, or the next one, which starts when the one in flight ends. So N concurrent
// callers cost two queries, not N. The query runs on its own context (bounded by
// timeout), so a caller that gives up does not fail the others.
type coalescer[T any] struct {
	fetch   func(ctx context.Context) (T, error)
	timeout time.Duration
	// gap is the least time between the starts of two queries (a poll interval); 0: none.
	gap time.Duration

	mu        sync.Mutex
	running   *flight[T]
	pending   *flight[T] // joined by callers while running is in flight; not started yet
	lastStart time.Time
	wg        sync.WaitGroup // queries in flight; Close waits for them
}

type flight[T any] struct {
	done    chan struct{}
	v       T
	err     error
	waiters int // callers that joined it (under the coalescer's mu)
}

// get returns the result of a query. With fresh, the query started after get was
// called (its answer is at least as new as the call); without, it may be the one
// already in flight.
func (c *coalescer[T]) get(ctx context.Context, fresh bool) (T, error) {
	c.mu.Lock()
	var f *flight[T]
	switch {
	case !fresh && c.running != nil:
		f = c.running
	case c.pending != nil:
		f = c.pending
	default:
		f = &flight[T]{done: make(chan struct{})}
		if c.running == nil {
			c.start(f)
		} else {
			c.pending = f
		}
	}
	f.waiters++
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// start runs f's query (after the gap since the last start); c.mu is held.
func (c *coalescer[T]) start(f *flight[T]) {
	c.running = f
	now := time.Now()
	wait := max(c.gap-now.Sub(c.lastStart), 0)
	c.lastStart = now.Add(wait)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if wait > 0 {
			time.Sleep(wait)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		f.v, f.err = c.fetch(ctx)
		cancel()
		c.mu.Lock()
		c.running = nil
		if next := c.pending; next != nil {
			c.pending = nil
			c.start(next)
		}
		c.mu.Unlock()
		close(f.done)
	}()
}

// wait waits for the queries in flight (and the ones they start) to end.
func (c *coalescer[T]) wait() { c.wg.Wait() }
