package follow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// TailConfig configures a Tail.
type TailConfig struct {
	// Store is read for what the tail does not hold. Required.
	Store eventstore.AllReader
	// MaxBytes bounds the event data (eventstore.Size) the tail keeps; the oldest
	// events go first. Default 64 MiB.
	MaxBytes int64
	// ReadLimit and ReadBytes bound one shared read of the store at the tail's end.
	// Defaults 512 events, 16 MiB.
	ReadLimit int
	ReadBytes int64
	// ReadTimeout bounds one shared read (it runs on its own, not under any one
	// follower's context). Default 30s.
	ReadTimeout time.Duration
	// EmptyGap, if positive, paces the shared reads at the end while they find nothing:
	// after one found nothing, the next from the same position starts no sooner than
	// EmptyGap after it, and every follower arriving meanwhile waits for that one read.
	// It bounds the followers' empty reads, together, to one per EmptyGap (syncd sets it
	// to the followers' Linger when they are off the commit path). Zero: read at once.
	EmptyGap time.Duration
}

// DefaultTailConfig returns the defaults; Store is left to the caller.
func DefaultTailConfig() TailConfig {
	return TailConfig{MaxBytes: 64 << 20, ReadLimit: 512, ReadBytes: 16 << 20, ReadTimeout: 30 * time.Second}
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c TailConfig) Validate() error {
	if c.Store == nil {
		return errors.New("follow: tail Store is required")
	}
	if c.MaxBytes < 0 || c.ReadLimit < 0 || c.ReadBytes < 0 || c.ReadTimeout < 0 || c.EmptyGap < 0 {
		return errors.New("follow: tail MaxBytes, ReadLimit, ReadBytes, ReadTimeout and EmptyGap must not be negative")
	}
	return nil
}

// Tail is a Reader of the global order shared by the followers of one process. It keeps
// the latest events read (a contiguous run of the global order after base, at most
// MaxBytes of data): a follower at or inside that run is served from memory, and the
// followers that reach its end together share one store read (the first starts it, the
// others wait for it). A follower behind the run reads the store itself, so a slow or
// restarted follower never holds back the others, nor do they wait for it.
//
// The run stays contiguous because the store never returns a position a transaction
// still in flight could commit before (eventstore.Store.ReadAll), so a read after the
// run's end continues it exactly.
type Tail struct {
	cfg TailConfig

	mu      sync.Mutex
	valid   bool                       // base and evs describe a run
	base    eventstore.Position        // evs are every event after base, up to their last
	evs     []eventstore.RecordedEvent // in the global order
	bytes   int64                      // eventstore.Bytes(evs)
	reading *tailRead                  // the shared read at the end, if one is in flight
	// emptyFrom and emptyAt: the last shared read that found nothing, from where and when
	// it ended (EmptyGap).
	emptyFrom eventstore.Position
	emptyAt   time.Time
	// at is where each follower handed out by Follower last read from (known once it
	// has read): the run keeps nothing at or before the lowest of them.
	at []followerAt

	hits, joined, shared, own, empty atomic.Uint64
}

// followerAt is the position a follower of the tail last read after.
type followerAt struct {
	pos   eventstore.Position
	known bool
}

// tailRead is one shared read of the store after from.
type tailRead struct {
	from      eventstore.Position
	notBefore time.Time // EmptyGap: the read starts no sooner
	done      chan struct{}
	err       error
}

// NewTail checks cfg and returns a Tail.
func NewTail(cfg TailConfig) (*Tail, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultTailConfig()
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, d.MaxBytes)
	cfg.ReadLimit = cmp.Or(cfg.ReadLimit, d.ReadLimit)
	cfg.ReadBytes = cmp.Or(cfg.ReadBytes, d.ReadBytes)
	cfg.ReadTimeout = cmp.Or(cfg.ReadTimeout, d.ReadTimeout)
	return &Tail{cfg: cfg}, nil
}

// TailStats counts how the tail served reads.
type TailStats struct {
	Hits   uint64 // reads served from memory
	Joined uint64 // reads served by a store read another follower started
	Shared uint64 // store reads at the end, each serving every follower waiting on it
	Empty  uint64 // of those, the ones that found nothing new
	Own    uint64 // store reads of a follower behind the tail
	Bytes  int64  // event data held
	Events int    // events held
}

// Stats returns the tail's counters.
func (t *Tail) Stats() TailStats {
	t.mu.Lock()
	b, n := t.bytes, len(t.evs)
	t.mu.Unlock()
	return TailStats{Hits: t.hits.Load(), Joined: t.joined.Load(), Shared: t.shared.Load(), Empty: t.empty.Load(), Own: t.own.Load(),
		Bytes: b, Events: n}
}

// Follower returns the Reader of one follower of the tail: its reads are the tail's,
// and each tells the tail where that follower is. Once every follower handed out has
// read, the run drops the events all of them are past (they were handed to each, and
// a follower reads after its checkpoint, which only moves forward): after a burst of
// commits the tail no longer keeps up to MaxBytes of event data nobody will read. A
// follower that does read before them again (a new leader with an older checkpoint)
// reads the store, as one behind the run always does. A follower that stops reading
// (its role held elsewhere) keeps the run bounded by MaxBytes alone, as before.
func (t *Tail) Follower() Reader {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.at = append(t.at, followerAt{})
	return tailFollower{t: t, i: len(t.at) - 1}
}

// tailFollower is one follower's Reader of a Tail.
type tailFollower struct {
	t *Tail
	i int
}

// ReadAfter records from as the follower's position, then reads the tail.
func (f tailFollower) ReadAfter(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	f.t.passed(f.i, from)
	return f.t.ReadAfter(ctx, from, limit, maxBytes)
}

// passed records that follower i reads after from, and drops the events of the run
// that every follower is past.
func (t *Tail) passed(i int, from eventstore.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.at[i] = followerAt{pos: from, known: true}
	low := from
	for _, a := range t.at {
		if !a.known {
			return
		}
		if a.pos.Less(low) {
			low = a.pos
		}
	}
	if !t.valid || len(t.evs) == 0 || low.Less(t.evs[0].Position) {
		return
	}
	n, found := slices.BinarySearchFunc(t.evs, low, func(e eventstore.RecordedEvent, p eventstore.Position) int {
		return cmpPos(e.Position, p)
	})
	if found {
		n++
	}
	t.bytes -= eventstore.Bytes(t.evs[:n])
	t.base = t.evs[n-1].Position
	clear(t.evs[:n]) // the dropped events' data is freed with them
	t.evs = t.evs[n:]
}

// cmpPos orders positions.
func cmpPos(a, b eventstore.Position) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// ReadAfter returns at most limit events after from (bounded by maxBytes as
// eventstore.ReadAllBounded does). The slice is the caller's; the events' Data and
// Metadata are shared and must not be modified.
func (t *Tail) ReadAfter(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	for {
		t.mu.Lock()
		if evs := t.cached(from, limit, maxBytes); len(evs) > 0 {
			t.mu.Unlock()
			t.hits.Add(1)
			return evs, nil
		}
		if !t.valid || t.end().Less(from) {
			// Nothing held, or every holder is behind from: the run starts again at from.
			t.valid, t.base, t.evs, t.bytes = true, from, nil, 0
		}
		if t.end() != from {
			t.mu.Unlock()
			return t.readOwn(ctx, from, limit, maxBytes)
		}
		r := t.reading
		if r == nil || r.from != from {
			r = &tailRead{from: from, done: make(chan struct{})}
			if t.cfg.EmptyGap > 0 && t.emptyFrom == from {
				r.notBefore = t.emptyAt.Add(t.cfg.EmptyGap)
			}
			t.reading = r
			go t.fetch(ctx, r)
		} else {
			t.joined.Add(1)
		}
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.done:
		}
		if r.err != nil {
			return nil, r.err
		}
		t.mu.Lock()
		evs := t.cached(from, limit, maxBytes)
		t.mu.Unlock()
		if len(evs) > 0 || t.stillAtEnd(from) {
			return evs, nil // nothing new after from
		}
		// The run moved on (evicted from under us, or restarted): look again.
	}
}

// stillAtEnd reports whether from is the end of the run.
func (t *Tail) stillAtEnd(from eventstore.Position) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.valid && t.end() == from
}

// fetch reads the store after r.from on its own context (the follower that started it
// may stop waiting) and appends what it read to the run, if the run still ends there.
func (t *Tail) fetch(ctx context.Context, r *tailRead) {
	if d := time.Until(r.notBefore); d > 0 {
		time.Sleep(d) // at most EmptyGap; the waiting followers heed their own ctx
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.ReadTimeout)
	defer cancel()
	evs, err := eventstore.ReadAllBounded(rctx, t.cfg.Store, r.from, t.cfg.ReadLimit, t.cfg.ReadBytes)
	t.shared.Add(1)
	if err == nil && len(evs) == 0 {
		t.empty.Add(1)
	}
	t.mu.Lock()
	if err == nil && len(evs) == 0 {
		t.emptyFrom, t.emptyAt = r.from, time.Now()
	}
	if err != nil {
		r.err = fmt.Errorf("read the global order after %s: %w", r.from, err)
	} else {
		t.extend(r.from, evs)
	}
	if t.reading == r {
		t.reading = nil
	}
	t.mu.Unlock()
	close(r.done)
}

// readOwn reads the store for a follower behind the run; what it read past the run's
// end continues the run.
func (t *Tail) readOwn(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	t.own.Add(1)
	evs, err := eventstore.ReadAllBounded(ctx, t.cfg.Store, from, limit, maxBytes)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.extend(from, evs)
	t.mu.Unlock()
	return evs, nil
}

// end is the position of the run's last event (base when it holds none). t.mu is held.
func (t *Tail) end() eventstore.Position {
	if len(t.evs) == 0 {
		return t.base
	}
	return t.evs[len(t.evs)-1].Position
}

// cached returns the events of the run after from, bounded like ReadAfter, or nil when
// from is not inside the run (or at its end). t.mu is held.
func (t *Tail) cached(from eventstore.Position, limit int, maxBytes int64) []eventstore.RecordedEvent {
	if !t.valid || from.Less(t.base) || len(t.evs) == 0 {
		return nil
	}
	i, _ := slices.BinarySearchFunc(t.evs, from, func(e eventstore.RecordedEvent, p eventstore.Position) int {
		switch {
		case e.Position.Less(p):
			return -1
		case p.Less(e.Position):
			return 1
		}
		return 0
	})
	if i < len(t.evs) && t.evs[i].Position == from {
		i++
	}
	if i >= len(t.evs) {
		return nil
	}
	page := t.evs[i:min(len(t.evs), i+max(limit, 1))]
	return slices.Clone(eventstore.TrimToBytes(page, maxBytes))
}

// extend appends to the run the events of evs (every event after from, up to the last
// of evs) that lie past its end, when from is inside the run or at its end; then drops
// the oldest events beyond MaxBytes. t.mu is held.
func (t *Tail) extend(from eventstore.Position, evs []eventstore.RecordedEvent) {
	if !t.valid || from.Less(t.base) || t.end().Less(from) {
		return // not contiguous with the run
	}
	end := t.end()
	for i := range evs {
		if end.Less(evs[i].Position) {
			t.evs = append(t.evs, evs[i:]...)
			t.bytes += eventstore.Bytes(evs[i:])
			break
		}
	}
	if t.bytes <= t.cfg.MaxBytes {
		return
	}
	// Drop down to three quarters of the bound (at least the oldest event), and copy
	// what is kept so the dropped events' memory is freed.
	drop := 0
	for drop < len(t.evs) && (t.bytes > t.cfg.MaxBytes*3/4 || drop == 0) {
		t.bytes -= eventstore.Size(&t.evs[drop])
		drop++
	}
	t.base = t.evs[drop-1].Position
	t.evs = slices.Clone(t.evs[drop:])
}
