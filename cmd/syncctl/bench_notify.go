package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stacksync-es/syncservice/transport/client"
)

// tap is a device's event handler that a scenario can listen through: devices are
// subscribed with it before any scenario knows what it wants of their events.
type tap struct {
	fn atomic.Pointer[func(client.Update)]
}

func (t *tap) handle(u client.Update) {
	if fn := t.fn.Load(); fn != nil {
		(*fn)(u)
	}
}

func (t *tap) listen(fn func(client.Update)) { t.fn.Store(&fn) }

// notifyRate is the pace of the notify scenario: --rate, or else half of the spread
// scenario's throughput earlier in this run.
func (e *benchEnv) notifyRate() (float64, error) {
	if e.cfg.rate > 0 {
		return e.cfg.rate, nil
	}
	if e.spreadPeak <= 0 {
		return 0, errors.New("notify: no --rate and no spread throughput measured before it in this run")
	}
	return e.spreadPeak / 2, nil
}

// notifyWait is how long the notify scenario waits, after its last commit, for the
// listeners to receive what is still in flight.
const notifyWait = 30 * time.Second

// runNotify measures what another device of the same workspace waits for: --workspaces
// users with two devices each; the first device of each commits at a fixed pace (in
// all --rate commits/s, open loop: a commit is sent on schedule whether or not the
// previous one was notified), the second listens, and a latency is the time from the
// commit's send to the second device's receipt of its notifyCommit. A commit the
// listener learns of only through a catch-up page, or never, counts as failed.
func (e *benchEnv) runNotify(ctx context.Context) (scenarioResult, error) {
	users := e.cfg.workspaces
	res := scenarioResult{Name: scenarioNotify, Unit: "commit", Devices: 2 * users, Workspaces: users, Workers: users}
	rate, err := e.notifyRate()
	if err != nil {
		return res, err
	}
	res.RatePerSecond = rate
	devs, err := e.serverDevices(ctx, scenarioNotify, users, 2)
	defer closeDevices(devs)
	if err != nil {
		return res, err
	}
	tag := e.run + "-" + scenarioNotify
	committers := make([]benchDevice, users)
	for i := range users {
		committers[i] = devs[2*i]
	}
	if err := warmUp(ctx, committers, tag); err != nil {
		return res, err
	}
	rec := newNotifyRecorder()
	for i := range users {
		devs[2*i+1].tap.listen(rec.received)
	}
	before, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	sent := paced(ctx, users, rate, e.stopRule(), func(ctx context.Context, w int, seq int64) error {
		d := committers[w]
		req := &client.CommitRequest{WorkspaceID: d.workspace, Items: newFiles(tag, seq, e.cfg.commitItems)}
		req.RequestID = rec.id(seq)
		rec.sending(req.RequestID)
		err := d.cl.Commit(ctx, req)
		if err != nil {
			rec.forget(req.RequestID)
		}
		return err
	})
	run := rec.wait(ctx, sent, notifyWait)
	res.Server = summarize(run)
	after, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	res.ServerCPUMsPerOp = cpuPerOp(before, after, res.Server.Ops)
	res.LocalCPU = localCPUPerOp(before.procs, after.procs, res.Server.Ops)
	res.ServerStages = stagesBetween(before, after)
	return res, ctx.Err()
}

// paced calls op on workers goroutines at rate calls per second in all, each worker
// on its own schedule (worker w every workers/rate seconds, offset so that the calls
// interleave), until stop says the phase is done. A worker that falls behind its
// schedule catches up at once, so a slow server is not hidden by a slower pace. It
// returns the sequence numbers of the calls that succeeded, and the phase's failures.
func paced(ctx context.Context, workers int, rate float64, stop stopRule, op func(ctx context.Context, w int, seq int64) error) pacedRun {
	interval := time.Duration(float64(workers) / rate * float64(time.Second))
	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	run := pacedRun{start: start}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			at := start.Add(interval * time.Duration(w) / time.Duration(workers))
			for ctx.Err() == nil && (stop.duration <= 0 || at.Sub(start) < stop.duration) {
				i := next.Add(1) - 1
				if stop.duration <= 0 && i >= stop.ops {
					return
				}
				if wait := time.Until(at); wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
						return
					}
				}
				err := op(ctx, w, i)
				mu.Lock()
				if err != nil {
					run.failed++
					if run.firstErr == nil {
						run.firstErr = err
					}
				} else {
					run.sent++
				}
				mu.Unlock()
				at = at.Add(interval)
			}
		})
	}
	wg.Wait()
	run.elapsed = time.Since(start)
	return run
}

// pacedRun is what paced did: the calls sent and failed, and how long it took.
type pacedRun struct {
	start    time.Time
	elapsed  time.Duration
	sent     int64
	failed   int64
	firstErr error
}

// notifyRecorder matches the listeners' notifications with the commits' send times.
type notifyRecorder struct {
	prefix string

	mu        sync.Mutex
	sentAt    map[string]time.Time
	latencies []time.Duration
	refused   int64 // notified with an item that did not succeed
	firstErr  error
	changed   chan struct{} // closed and replaced on every receipt
}

func newNotifyRecorder() *notifyRecorder {
	return &notifyRecorder{prefix: fmt.Sprintf("notify-%d-", time.Now().UnixNano()), sentAt: map[string]time.Time{}, changed: make(chan struct{})}
}

func (r *notifyRecorder) id(seq int64) string { return fmt.Sprintf("%s%d", r.prefix, seq) }

func (r *notifyRecorder) sending(requestID string) {
	r.mu.Lock()
	r.sentAt[requestID] = time.Now()
	r.mu.Unlock()
}

// forget drops a commit that was not sent.
func (r *notifyRecorder) forget(requestID string) {
	r.mu.Lock()
	delete(r.sentAt, requestID)
	r.mu.Unlock()
}

// received is the listeners' handler: a notification of a commit this run sent is
// timed once (a repeated delivery is ignored).
func (r *notifyRecorder) received(u client.Update) {
	now := time.Now()
	if u.Commit == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t0, ok := r.sentAt[u.Commit.RequestID]
	if !ok {
		return
	}
	delete(r.sentAt, u.Commit.RequestID)
	for _, it := range u.Commit.Items {
		if !it.CommitSucceed {
			r.refused++
			if r.firstErr == nil {
				r.firstErr = fmt.Errorf("commit %s: item refused: %s", u.Commit.RequestID, it.Reason)
			}
			return
		}
	}
	r.latencies = append(r.latencies, now.Sub(t0))
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait waits, at most d, until every commit sent has been received, then returns the
// phase: its latencies, and as failed the commits not sent, refused or never received
// as a notification.
func (r *notifyRecorder) wait(ctx context.Context, sent pacedRun, d time.Duration) phaseRun {
	deadline := time.After(d)
	for {
		r.mu.Lock()
		pending, changed := len(r.sentAt), r.changed
		r.mu.Unlock()
		if pending == 0 {
			break
		}
		stop := false
		select {
		case <-changed:
		case <-deadline:
			stop = true
		case <-ctx.Done():
			stop = true
		}
		if stop {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	run := phaseRun{latencies: r.latencies, elapsed: sent.elapsed, failed: sent.failed + r.refused + int64(len(r.sentAt)), firstErr: sent.firstErr}
	if run.firstErr == nil {
		run.firstErr = r.firstErr
	}
	if run.firstErr == nil && len(r.sentAt) > 0 {
		run.firstErr = fmt.Errorf("%d commits were never notified to the other device (or only through a catch-up page)", len(r.sentAt))
	}
	return run
}
