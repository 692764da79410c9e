package service

import (
	"context"
	"sync"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/stages"
)

// groupAppender is group commit: appends to different streams that arrive while others
// are being written are gathered into one store transaction (one round trip, one
// durable commit). Nobody waits for a batch to fill: a caller that finds fewer than
// maxFlushers batches in flight writes at once whatever is queued, its own append
// included; under load the queue grows while transactions are in flight, and the next
// batch takes all of it.
type groupAppender struct {
	store       eventstore.BatchAppender
	maxFlushers int
	maxBatch    int
	timeout     time.Duration

	mu       sync.Mutex
	queue    []*appendReq
	flushers int
}

type appendReq struct {
	traces   []*stages.Trace // internal/stages: the commits this append serves
	stream   string
	expected eventstore.ExpectedVersion
	recs     []eventstore.Record
	done     chan eventstore.BatchResult // buffered 1
}

// append writes records to stream with the expected version, possibly together with
// other streams' appends. Its result is the store's for that append alone.
func (g *groupAppender) append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, recs []eventstore.Record) (eventstore.AppendResult, error) {
	r := &appendReq{traces: stages.From(ctx), stream: stream, expected: expected, recs: recs, done: make(chan eventstore.BatchResult, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	flush := g.flushers < g.maxFlushers
	if flush {
		g.flushers++
	}
	g.mu.Unlock()
	if flush {
		g.flush(r)
	}
	select {
	case res := <-r.done:
		return res.Result, res.Err
	case <-ctx.Done():
		// Not yet taken into a batch: withdraw it, so nothing is written for a caller
		// that gave up. Already taken: the outcome is unknown, and a retry with the same
		// record id is safe.
		g.mu.Lock()
		for i, q := range g.queue {
			if q == r {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
		return eventstore.AppendResult{}, ctx.Err()
	}
}

// flush writes batches until the queue is empty. A caller (own != nil) stops once its
// own append is done and hands any remaining queue to a new goroutine, so that no caller
// serves others for long and no queued append is left without a flusher.
func (g *groupAppender) flush(own *appendReq) {
	for {
		batch := g.take()
		if len(batch) == 0 {
			return
		}
		g.write(batch)
		if own != nil && len(own.done) == 1 {
			g.mu.Lock()
			more := len(g.queue) > 0
			if !more {
				g.flushers--
			}
			g.mu.Unlock()
			if more {
				go g.flush(nil)
			}
			return
		}
	}
}

// take removes the next batch from the queue (at most maxBatch appends, one per stream),
// or releases this flusher when the queue is empty.
func (g *groupAppender) take() []*appendReq {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.flushers--
		return nil
	}
	var batch, rest []*appendReq
	streams := map[string]bool{}
	for _, r := range g.queue {
		if len(batch) < g.maxBatch && !streams[r.stream] {
			streams[r.stream] = true
			batch = append(batch, r)
		} else {
			rest = append(rest, r)
		}
	}
	g.queue = rest
	return batch
}

func (g *groupAppender) write(batch []*appendReq) {
	appends := make([]eventstore.StreamAppend, len(batch))
	var traces []*stages.Trace
	for i, r := range batch {
		appends[i] = eventstore.StreamAppend{Stream: r.stream, Expected: r.expected, Records: r.recs}
		traces = append(traces, r.traces...)
	}
	ctx, cancel := context.WithTimeout(timed(context.Background(), traces), g.timeout)
	defer cancel()
	results := g.store.AppendBatch(ctx, appends)
	for i, r := range batch {
		r.done <- results[i]
	}
}
