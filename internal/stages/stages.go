// Package stages owns the per-request stage timing of the commit path (syncd
// -commit-stages, off by default): a Trace started when the RPC server takes a delivery
// travels in the request's context, and each layer the commit passes through marks the
// moment it reached a Stage (request decoded, queued for its workspace, taken into a
// batch, decided, appended, committed, published, answered). The event store, which
// knows nothing of the project, reports its append's phases through
// eventstore.WithPhases, which the service turns into stages. The RPC server hands the
// finished Trace to whoever observes it (cmd/syncd: a Prometheus histogram per stage).
//
// A context without a Trace makes every Mark a no-op, so the layers mark
// unconditionally. Work done for several requests at once (one batch, one group
// commit) marks all their Traces through a context carrying them together (With with
// several traces). It never changes what the commit path does, only records when.
package stages

import (
	"context"
	"sync/atomic"
	"time"
)

// Stage is a point on a commit's path, in the order a commit reaches them.
type Stage uint8

// The stages of a commit. A stage not reached (a refused commit, a commit without a
// direct publisher) stays unmarked.
const (
	Received  Stage = iota // the RPC server took the delivery off the consumer (the trace's start)
	Started                // a worker began handling it (after the user's and the server's admission)
	Parsed                 // the envelope and the commit's params were decoded and the caller identified
	Queued                 // the service checked the device, reserved ids and queued it for its workspace
	Taken                  // a batch of the workspace's queue took it (the runner holds the workspace)
	Decided                // its batch was decided and encoded: the append is about to be sent
	Writing                // the store began its append (after any wait for a group commit's turn)
	Sent                   // the store's first round trip (BEGIN, stream locks, append) answered, when it takes two
	Committed              // COMMIT answered: the append is durable
	Published              // its notifyCommit was handed to the direct publisher (written or declined)
	Answered               // the handler has the service's answer
	Done                   // the reply, if any, was published and the delivery settled (acked, or covered by a later multiple ack)
	NumStages
)

var names = [NumStages]string{"received", "started", "parsed", "queued", "taken", "decided", "writing", "sent",
	"committed", "published", "answered", "done"}

// String is the stage's metric label.
func (s Stage) String() string {
	if s < NumStages {
		return names[s]
	}
	return "unknown"
}

// Trace is one request's stage times. Its methods are safe for concurrent use (a batch
// runner may mark a trace while the request's handler gives up waiting) and a nil
// *Trace ignores them.
type Trace struct {
	start time.Time
	at    [NumStages]atomic.Int64 // nanoseconds after start, +1 (0: not reached)
}

// Start begins a trace at now, with Received marked.
func Start() *Trace {
	t := &Trace{start: time.Now()}
	t.at[Received].Store(1)
	return t
}

// Mark records that the request reached s now. A later mark of the same stage wins (a
// commit decided again after a conflict is timed from its last decision).
func (t *Trace) Mark(s Stage) {
	if t == nil || s >= NumStages {
		return
	}
	t.at[s].Store(int64(time.Since(t.start)) + 1)
}

// At returns when the request reached s, as a duration from Received, and whether it did.
func (t *Trace) At(s Stage) (time.Duration, bool) {
	if t == nil || s >= NumStages {
		return 0, false
	}
	v := t.at[s].Load()
	return time.Duration(v - 1), v > 0
}

// Step is the time one stage took: from the previous stage the trace reached to this one.
type Step struct {
	Stage Stage
	Took  time.Duration
}

// Steps returns, in stage order, each reached stage after Received with the time since
// the previous reached stage. A stage marked before the one before it (possible when
// stages are marked by different goroutines without order) counts as 0.
func (t *Trace) Steps() []Step {
	if t == nil {
		return nil
	}
	var steps []Step
	var prev time.Duration
	for s := Received + 1; s < NumStages; s++ {
		at, ok := t.At(s)
		if !ok {
			continue
		}
		steps = append(steps, Step{Stage: s, Took: max(at-prev, 0)})
		prev = max(prev, at)
	}
	return steps
}

type ctxKey struct{}

// With returns ctx carrying traces (nil ones are left out): Mark on it marks them all.
// With no trace it returns ctx unchanged.
func With(ctx context.Context, traces ...*Trace) context.Context {
	var ts []*Trace
	for _, t := range traces {
		if t != nil {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, ts)
}

// From returns the traces ctx carries (nil: none).
func From(ctx context.Context) []*Trace {
	ts, _ := ctx.Value(ctxKey{}).([]*Trace)
	return ts
}

// Only returns the single trace ctx carries, nil when it carries none or several.
func Only(ctx context.Context) *Trace {
	if ts := From(ctx); len(ts) == 1 {
		return ts[0]
	}
	return nil
}

// Mark marks s on every trace ctx carries.
func Mark(ctx context.Context, s Stage) {
	for _, t := range From(ctx) {
		t.Mark(s)
	}
}
