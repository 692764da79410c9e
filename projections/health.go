package projections

import (
	"fmt"
	"sync"
	"time"
)

// health tracks whether a projector is making progress.
type health struct {
	mu         sync.Mutex
	stuckSince time.Time // the first failure since the last progress (zero: none)
	busySince  time.Time // when the batch being applied started, or last made progress
	lastErr    error
}

// reset forgets every earlier failure and batch: a new term as the active projector.
func (h *health) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stuckSince, h.busySince, h.lastErr = time.Time{}, time.Time{}, nil
}

func (h *health) started() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busySince = time.Now()
}

func (h *health) finished() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busySince = time.Time{}
}

// progressed records a committed batch, or a subscription batch fully applied.
func (h *health) progressed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stuckSince, h.lastErr = time.Time{}, nil
	if !h.busySince.IsZero() {
		h.busySince = time.Now()
	}
}

// failed records a failure; the projector is stuck from the first one until it
// progresses again.
func (h *health) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stuckSince.IsZero() {
		h.stuckSince = time.Now()
	}
	h.lastErr = err
}

// Healthy returns nil while the projector makes progress, or is not the active one (a
// standby, whatever happened in an earlier term), and an error naming the model, its
// checkpoint and the last error once it has made none for longer than
// Config.StallAfter while events are pending: its batches keep failing (a transient
// failure that does not pass: the database refuses the writes) or one batch has been
// applying for that long. Set-aside events do not count: they are isolated, and listed
// by SetAsideOf. syncd's /readyz reports it.
func (p *Projector) Healthy() error {
	if !p.active.Load() {
		return nil
	}
	p.health.mu.Lock()
	stuck, busy, last := p.health.stuckSince, p.health.busySince, p.health.lastErr
	p.health.mu.Unlock()
	now := time.Now()
	switch {
	case !stuck.IsZero() && now.Sub(stuck) > p.cfg.StallAfter:
		return fmt.Errorf("projector %s stuck at checkpoint %s: no progress for %s; last error: %v",
			p.model.name, p.Status().Position, now.Sub(stuck).Round(time.Second), last)
	case !busy.IsZero() && now.Sub(busy) > p.cfg.StallAfter:
		return fmt.Errorf("projector %s stuck at checkpoint %s: one batch has been applying for %s",
			p.model.name, p.Status().Position, now.Sub(busy).Round(time.Second))
	}
	return nil
}
