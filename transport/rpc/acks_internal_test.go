package rpc

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
)

// fakeChannel records acks as the broker applies them: a multiple ack covers every
// unacked tag up to its own; acking a tag the broker no longer holds is the channel
// error "unknown delivery tag".
type fakeChannel struct {
	mu     sync.Mutex
	held   map[uint64]bool // delivered, not acked
	done   map[uint64]bool // settled with ack by the handler (may be acked)
	frames int
	err    error
}

func (f *fakeChannel) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames++
	if !f.held[tag] && f.err == nil {
		f.err = fmt.Errorf("ack of tag %d, which the broker does not hold (unknown delivery tag)", tag)
	}
	cover := []uint64{tag}
	if multiple {
		cover = cover[:0]
		for t := range f.held {
			if t <= tag {
				cover = append(cover, t)
			}
		}
	}
	for _, t := range cover {
		if !f.done[t] && f.err == nil {
			f.err = fmt.Errorf("ack of tag %d (multiple=%v) covers tag %d, which was not settled with an ack", tag, multiple, t)
		}
		delete(f.held, t)
	}
	return nil
}

func (f *fakeChannel) settled(tag uint64) {
	f.mu.Lock()
	f.done[tag] = true
	f.mu.Unlock()
}

// TestAcksCoverOnlySettledDeliveries settles deliveries in random orders, from many
// goroutines, some of them left unacked, and checks what the broker saw: every
// delivery settled with an ack was acked, none other was, no ack covered a delivery
// before its settle, and a run without unacked deliveries took fewer frames than
// deliveries when they settled out of order.
func TestAcksCoverOnlySettledDeliveries(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(60)
		keepEvery := 0 // no delivery left unacked
		if seed%3 == 0 {
			keepEvery = 2 + rng.IntN(n+1)
		}
		f := &fakeChannel{held: map[uint64]bool{}, done: map[uint64]bool{}}
		a := newAcks(f, slog.New(slog.DiscardHandler))
		for tag := uint64(1); tag <= uint64(n); tag++ {
			f.held[tag] = true
			a.taken(tag)
		}
		perm := rng.Perm(n)
		var wg sync.WaitGroup
		for _, i := range perm {
			tag := uint64(i + 1)
			ack := keepEvery == 0 || tag%uint64(keepEvery) != 0
			wg.Go(func() {
				if ack {
					f.settled(tag)
				}
				a.settle(tag, ack)
				a.leave(tag) // a second settle is ignored
			})
		}
		wg.Wait()
		if f.err != nil {
			t.Fatalf("seed %d: %v", seed, f.err)
		}
		for tag := uint64(1); tag <= uint64(n); tag++ {
			if f.done[tag] == f.held[tag] {
				t.Fatalf("seed %d: tag %d settled with ack=%v, still held by the broker=%v", seed, tag, f.done[tag], f.held[tag])
			}
		}
	}
}

// TestAcksOneFrameForAGroup: deliveries that settle behind the oldest one are acked
// with it, in one frame.
func TestAcksOneFrameForAGroup(t *testing.T) {
	f := &fakeChannel{held: map[uint64]bool{}, done: map[uint64]bool{}}
	a := newAcks(f, slog.New(slog.DiscardHandler))
	for tag := uint64(1); tag <= 5; tag++ {
		f.held[tag] = true
		a.taken(tag)
	}
	for _, tag := range []uint64{5, 3, 2, 4, 1} {
		f.settled(tag)
		a.settle(tag, true)
	}
	if f.err != nil || len(f.held) != 0 || f.frames != 1 {
		t.Fatalf("err %v, still held %v, %d ack frames; want nil, none, 1", f.err, f.held, f.frames)
	}
}

// TestAcksSlowDeliveryHoldsFewPlaces: while the oldest delivery is still in progress, at
// most maxAckBehind finished ones wait for it unacked (the rest are acked alone), so a
// slow request does not fill the prefetch window; once it finishes, everything is acked.
func TestAcksSlowDeliveryHoldsFewPlaces(t *testing.T) {
	f := &fakeChannel{held: map[uint64]bool{}, done: map[uint64]bool{}}
	a := newAcks(f, slog.New(slog.DiscardHandler))
	const n = 64
	for tag := uint64(1); tag <= n; tag++ {
		f.held[tag] = true
		a.taken(tag)
	}
	for tag := uint64(2); tag <= n; tag++ {
		f.settled(tag)
		a.settle(tag, true)
		finished := 0 // finished, still held by the broker
		for t := range f.held {
			if f.done[t] {
				finished++
			}
		}
		if finished > maxAckBehind {
			t.Fatalf("after %d of %d settled behind a slow delivery, the broker holds %d finished ones unacked; want at most %d",
				tag-1, n-1, finished, maxAckBehind)
		}
	}
	f.settled(1)
	a.settle(1, true)
	if f.err != nil || len(f.held) != 0 {
		t.Fatalf("err %v, still held %v; want nil, none", f.err, f.held)
	}
}
