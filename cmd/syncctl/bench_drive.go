package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/client"
)

// stopRule ends a measured phase: after ops operations, or after duration when it is
// positive.
type stopRule struct {
	ops      int64
	duration time.Duration
}

// phaseRun is what drive measured: the latency of every operation that succeeded.
type phaseRun struct {
	latencies []time.Duration
	failed    int64
	elapsed   time.Duration
	firstErr  error
}

// drive runs workers goroutines, each calling op (its worker number and the
// operation's sequence number) one call after another until stop says the phase is
// done or ctx ends, and times each call.
func drive(ctx context.Context, workers int, stop stopRule, op func(ctx context.Context, worker int, seq int64) error) phaseRun {
	var next, failed atomic.Int64
	var errOnce sync.Once
	var firstErr error
	lat := make([][]time.Duration, workers)
	start := time.Now()
	var deadline time.Time
	if stop.duration > 0 {
		deadline = start.Add(stop.duration)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				i := next.Add(1) - 1
				if stop.duration <= 0 && i >= stop.ops {
					return
				}
				t0 := time.Now()
				err := op(ctx, w, i)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				lat[w] = append(lat[w], d)
			}
		})
	}
	wg.Wait()
	r := phaseRun{failed: failed.Load(), elapsed: time.Since(start), firstErr: firstErr}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	return r
}

// commitOp is one worker's commit of new files: worker w commits through device
// w mod len(devs) and is done when the commit's own notifyCommit arrived.
func commitOp(devs []benchDevice, tag string, items int) func(ctx context.Context, w int, seq int64) error {
	return func(ctx context.Context, w int, seq int64) error {
		d := devs[w%len(devs)]
		n, err := d.cl.CommitAndWait(ctx, &client.CommitRequest{WorkspaceID: d.workspace, Items: newFiles(tag, seq, items)})
		if err != nil {
			return err
		}
		for _, it := range n.Items {
			if !it.CommitSucceed {
				return fmt.Errorf("commit %s: item refused: %s", n.RequestID, it.Reason)
			}
		}
		return nil
	}
}

// lastTempID numbers the temporary ids of new files: a device's tempId names one new
// item for the server, so no two files of a run share one.
var lastTempID atomic.Int64

// newFiles returns n new files of 1 KiB in one chunk each, named by tag, seq and
// their index, so that every commit of a run adds distinct files.
func newFiles(tag string, seq int64, n int) []domain.ItemMetadata {
	items := make([]domain.ItemMetadata, n)
	now := time.Now().UTC()
	for k := range items {
		temp := -lastTempID.Add(1)
		items[k] = domain.ItemMetadata{TempID: &temp, Version: 1, Status: domain.StatusNew, ModifiedAt: now,
			Filename: fmt.Sprintf("bench-%s-%d-%d.bin", tag, seq, k), Mimetype: "application/octet-stream",
			Size: 1024, Checksum: seq*int64(n) + int64(k), Chunks: []string{fmt.Sprintf("chk-%s-%d-%d", tag, seq, k)}}
	}
	return items
}

// warmUp commits once through every device, untimed: connections, caches and queues
// are warm before the measured phase starts.
func warmUp(ctx context.Context, devs []benchDevice, tag string) error {
	op := commitOp(devs, tag+"-warm", 1)
	for w := range devs {
		if err := op(ctx, w, int64(w)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}
