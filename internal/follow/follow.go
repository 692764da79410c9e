// Package follow owns the loop every follower of the store's global order runs in syncd
// (the projectors, the notifier, the binder): load the checkpoint, read a batch bounded
// in count and bytes after it, cut it at the follower's horizons, hand it to a handler
// that does the follower's work and moves its checkpoint, then read again at once, after
// a linger, or when woken or polled. Store and database failures are retried with
// back-off; progress, lag and stalls are kept for metrics and /readyz.
//
// It also owns the checkpoint table shape the notifier and the binder share (Table: a
// row per follower that a CAS only ever moves forward) and Tail, the one reader of the
// global order a process shares among its followers.
//
// What a follower does with the events (publish, bind, apply to a read model), and how it
// isolates an event it cannot handle, stays in its own package: follow imports neither
// projections nor transport.
package follow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/leader"
)

// Reader reads the global order: at most limit events after from, cut after the event
// that reaches maxBytes of data (at least one event), as eventstore.ReadAllBounded does.
type Reader interface {
	ReadAfter(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error)
}

// StoreReader is a Reader of its own: every call reads the store.
type StoreReader struct{ Store eventstore.AllReader }

// ReadAfter reads the store (see Reader).
func (r StoreReader) ReadAfter(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	return eventstore.ReadAllBounded(ctx, r.Store, from, limit, maxBytes)
}

// Handler does a follower's work for one batch (events after the checkpoint, in the
// global order) and moves the follower's checkpoint past what it finished, never back.
// It returns how many events of the batch, from its start, are done and checkpointed;
// with an error, Run returns it after recording those.
type Handler func(ctx context.Context, batch []eventstore.RecordedEvent) (done int, err error)

// Config configures a Follower.
type Config struct {
	// Name names the follower in logs and health reports. Required.
	Name string
	// Reader reads the global order (a Tail shared with the process's other followers,
	// or a StoreReader). Required.
	Reader Reader
	// Load returns the follower's checkpoint. Required.
	Load func(ctx context.Context) (eventstore.Position, error)
	// Allow, if set, returns how many events of a batch read, from its first, may be
	// handled now (the follower's horizons). The rest is read again later.
	Allow func(ctx context.Context, evs []eventstore.RecordedEvent) (int, error)
	// BatchSize is the most events handed to the handler at once. Default 256.
	BatchSize int
	// BatchBytes bounds the event data of one batch. Default 16 MiB.
	BatchBytes int64
	// StallAfter is how long the follower may make no progress while events are pending
	// before Healthy reports it. Default 30s.
	StallAfter time.Duration
	// PollMin and PollMax bound the adaptive wait between reads while there is nothing
	// to do (it doubles from PollMin up to PollMax). Defaults 2ms, 100ms.
	PollMin, PollMax time.Duration
	// Linger, if positive, is the wait after a batch smaller than BatchSize (with nothing
	// more visible) before reading again, so that what arrives meanwhile goes into one
	// batch. Zero: read again at once.
	Linger time.Duration
	// RetryMin and RetryMax bound the back-off of Retry. Defaults 100ms, 5s.
	RetryMin, RetryMax time.Duration
	// OnAdvance, if set, is called after every checkpoint move (a latency hint for
	// whoever waits on this follower's checkpoint; it must not block).
	OnAdvance func()
	// Idle, if set, is called after a read that found nothing to handle, before the
	// follower waits; an error ends Run with it. It is called once more when Run ends
	// because ctx ended (a stop, or the role lost), with a context of its own bounded by
	// idleFlushTimeout; that call's error is only logged. (The projector stores a
	// checkpoint move it deferred.)
	Idle func(ctx context.Context) error
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Name, Reader and Load are left to the caller.
func DefaultConfig() Config {
	return Config{BatchSize: 256, BatchBytes: 16 << 20, StallAfter: 30 * time.Second,
		PollMin: 2 * time.Millisecond, PollMax: 100 * time.Millisecond,
		RetryMin: 100 * time.Millisecond, RetryMax: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.BatchSize = cmp.Or(c.BatchSize, d.BatchSize)
	c.BatchBytes = cmp.Or(c.BatchBytes, d.BatchBytes)
	c.StallAfter = cmp.Or(c.StallAfter, d.StallAfter)
	c.PollMin = cmp.Or(c.PollMin, d.PollMin)
	c.PollMax = max(cmp.Or(c.PollMax, d.PollMax), c.PollMin)
	c.RetryMin = cmp.Or(c.RetryMin, d.RetryMin)
	c.RetryMax = max(cmp.Or(c.RetryMax, d.RetryMax), c.RetryMin)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.Name == "" || c.Reader == nil || c.Load == nil {
		return errors.New("follow: Name, Reader and Load are required")
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.StallAfter < 0 || c.PollMin < 0 || c.PollMax < 0 || c.Linger < 0 ||
		c.RetryMin < 0 || c.RetryMax < 0 {
		return errors.New("follow: sizes and durations must not be negative")
	}
	return nil
}

// Status is a follower's progress as this process knows it.
type Status struct {
	// Leader reports whether this instance holds the role and is working.
	Leader bool
	// Position is the checkpoint: every event up to it has been handled.
	Position eventstore.Position
	// Handled counts the events this instance moved past.
	Handled uint64
	// Failures counts failed steps that were retried.
	Failures uint64
	// Lag is the age of the oldest event read but not yet handled; 0 when caught up.
	Lag time.Duration
	// HeldByHorizon reports that the last read found events beyond the horizon.
	HeldByHorizon bool
}

// Follower runs the loop of one follower; see the package doc.
type Follower struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	mu       sync.Mutex
	status   Status
	oldest   time.Time // RecordedAt of the oldest unhandled event seen; zero when caught up
	progress time.Time // last time the checkpoint moved or nothing was pending
	lastErr  error     // the last failure of a step, for Healthy
}

// New checks cfg and returns a Follower; it does no I/O until Run.
func New(cfg Config) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Follower{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1)}, nil
}

// Lead runs task whenever this process holds the leader role lc names, marking the
// follower as leader for the task's term (see SetLeader).
func (f *Follower) Lead(ctx context.Context, lc leader.Config, task func(ctx context.Context) error) error {
	return leader.Run(ctx, lc, func(ctx context.Context) error {
		f.SetLeader(true)
		defer f.SetLeader(false)
		return task(ctx)
	})
}

// SetLeader records whether this instance holds the role. A new term starts the
// follower's health afresh: what an earlier term saw pending, its failures and its last
// progress belong to a checkpoint another instance may have moved since, and must not
// make a new leader (or a standby) unhealthy.
func (f *Follower) SetLeader(leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Leader = leader
	f.status.HeldByHorizon = false
	f.oldest, f.lastErr = time.Time{}, nil
	f.progress = time.Now()
}

// Healthy reports a follower that has made no progress for longer than StallAfter
// while events are pending, naming it as what; nil otherwise (also while it is not the
// leader).
func (f *Follower) Healthy(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.status.Leader || f.oldest.IsZero() || f.progress.IsZero() {
		return nil
	}
	stalled := time.Since(f.progress)
	if stalled <= f.cfg.StallAfter {
		return nil
	}
	why := "no error"
	if f.lastErr != nil {
		why = f.lastErr.Error()
	} else if f.status.HeldByHorizon {
		why = "held by the horizon"
	}
	return fmt.Errorf("%s %s: no progress for %s at checkpoint %s with events pending: %s",
		what, f.cfg.Name, stalled.Round(time.Second), f.status.Position, why)
}

// Status returns the follower's progress.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	if !f.oldest.IsZero() {
		s.Lag = max(0, time.Since(f.oldest))
	}
	return s
}

// Failed counts a failed step and keeps its error for Healthy.
func (f *Follower) Failed(err error) {
	f.mu.Lock()
	f.status.Failures++
	f.lastErr = err
	f.mu.Unlock()
}

// Wake cuts the current idle wait short. Correctness never depends on it.
func (f *Follower) Wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Retry runs op until it succeeds, ctx ends, or it fails with eventstore.ErrClosed,
// waiting with exponential back-off between attempts (each failure counted by Failed).
// It returns nil or the final error.
func (f *Follower) Retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	backoff := f.cfg.RetryMin
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, eventstore.ErrClosed) {
			return fmt.Errorf("%s: %w", what, err)
		}
		f.Failed(err)
		f.log.Warn("follower step failed; retrying", "follower", f.cfg.Name, "step", what, "err", err, "in", backoff)
		if err := Sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, f.cfg.RetryMax)
	}
}

// idleFlushTimeout bounds Idle's last call when Run ends with its context.
const idleFlushTimeout = 2 * time.Second

// flushIdle gives Idle its last call once ctx has ended: what it stores (the
// projector's deferred checkpoint move) is stored at a clean stop rather than left
// for the next leader or start to repeat. Nothing when Run ended for another reason.
func (f *Follower) flushIdle(ctx context.Context) {
	if f.cfg.Idle == nil || ctx.Err() == nil {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), idleFlushTimeout)
	defer cancel()
	if err := f.cfg.Idle(fctx); err != nil {
		f.log.Warn("follower: last idle call at stop", "follower", f.cfg.Name, "err", err)
	}
}

// Run follows the global order from the checkpoint Load returns, handing each batch to
// handle, until ctx ends or handle fails (its error is returned after the events it
// finished are recorded).
func (f *Follower) Run(ctx context.Context, handle Handler) error {
	var pos eventstore.Position
	if err := f.Retry(ctx, "load checkpoint", func(ctx context.Context) error {
		var err error
		pos, err = f.cfg.Load(ctx)
		return err
	}); err != nil {
		return err
	}
	f.mu.Lock()
	f.status.Position = pos
	if f.progress.IsZero() {
		f.progress = time.Now()
	}
	f.mu.Unlock()
	f.log.Info("following the event store", "follower", f.cfg.Name, "from", pos)
	defer f.flushIdle(ctx)
	wait := f.cfg.PollMin
	for {
		if err := ctx.Err(); err != nil {
			return err // a read served from memory does not look at ctx
		}
		readAt := time.Now()
		evs, more, err := f.next(ctx, pos)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			if f.cfg.Idle != nil {
				if err := f.cfg.Idle(ctx); err != nil {
					return err
				}
			}
			if err := f.idle(ctx, &wait, readAt); err != nil {
				return err
			}
			continue
		}
		wait = f.cfg.PollMin
		done, herr := handle(ctx, evs)
		done = min(max(done, 0), len(evs))
		if done > 0 {
			pos = evs[done-1].Position
			f.advanced(pos, done, more || done < len(evs))
		}
		if herr != nil {
			return herr
		}
		if f.cfg.Linger > 0 && !more && len(evs) < f.cfg.BatchSize {
			if err := Sleep(ctx, f.cfg.Linger); err != nil {
				return err
			}
		}
	}
}

// idle waits after a read (started at readAt) that found nothing to do: until Wake or
// the adaptive poll wait, which it moves. A follower with Linger (off the commit path)
// reads again no sooner than Linger after readAt, however often it is woken: under load
// every append in the process wakes every follower, and nearly all of those reads found
// nothing, because an append's event becomes readable only once no transaction begun
// before it is still in flight (eventstore.Store.ReadAll), and one nearly always is.
// Events appended by other processes are found by the poll, as before.
func (f *Follower) idle(ctx context.Context, wait *time.Duration, readAt time.Time) error {
	t := time.NewTimer(max(*wait, f.cfg.Linger))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.kick:
		*wait = f.cfg.PollMin
		if d := time.Until(readAt.Add(f.cfg.Linger)); d > 0 {
			return Sleep(ctx, d)
		}
	case <-t.C:
		*wait = min(*wait*2, f.cfg.PollMax)
	}
	return nil
}

// advanced records a checkpoint move to pos over n events; more reports that events
// after them are pending.
func (f *Follower) advanced(pos eventstore.Position, n int, more bool) {
	f.mu.Lock()
	f.status.Position = pos
	f.status.Handled += uint64(n)
	f.progress = time.Now()
	f.lastErr = nil
	if !more {
		f.oldest = time.Time{}
	}
	f.mu.Unlock()
	if f.cfg.OnAdvance != nil {
		f.cfg.OnAdvance()
	}
}

// next reads the events after pos that may be handled now: at most one batch (bounded
// in count and bytes), cut at the horizons. more reports that further events were
// already visible.
func (f *Follower) next(ctx context.Context, pos eventstore.Position) (evs []eventstore.RecordedEvent, more bool, err error) {
	err = f.Retry(ctx, "read events", func(ctx context.Context) error {
		var err error
		evs, err = f.cfg.Reader.ReadAfter(ctx, pos, f.cfg.BatchSize, f.cfg.BatchBytes)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	var oldest time.Time
	if len(evs) > 0 {
		oldest = evs[0].RecordedAt
	}
	more = eventstore.MayHaveMore(evs, f.cfg.BatchSize, f.cfg.BatchBytes)
	n := len(evs)
	if f.cfg.Allow != nil && n > 0 {
		if n, err = f.cfg.Allow(ctx, evs); err != nil {
			return nil, false, err
		}
	}
	held := n < len(evs)
	if held {
		more = true
	}
	evs = evs[:n]
	f.mu.Lock()
	f.status.HeldByHorizon = held
	f.oldest = oldest
	if oldest.IsZero() {
		f.progress = time.Now() // nothing pending
	}
	f.mu.Unlock()
	return evs, more, nil
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
