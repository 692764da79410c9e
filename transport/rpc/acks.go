package rpc

import (
	"log/slog"
	"sync"
)

// acknowledger is what acks needs of the consumer channel (*amqp.Channel).
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
}

// maxAckBehind bounds the finished deliveries whose ack waits for an older delivery
// still in progress: beyond it they are acked alone, so that one slow request (a large
// read, an updateDevice waiting for the binder) never holds more than this many of the
// prefetch window's places.
const maxAckBehind = 8

// acks settles a session's deliveries with as few ack frames as it can: a delivery
// whose work is done is acked together with every delivery before it on the channel
// once all of those are done too, with one basic.ack multiple=true. Handlers finish out
// of order, and commits finish in groups (the store appends several in one round
// trip), so one frame often covers several requests: each frame is a message through
// the broker's reader, channel and queue processes.
//
// A delivery is never covered by an ack before its own work is done. A delivery left
// unacked (to be redelivered: the reply may be lost, or the session stops first) ends
// the multiple acks: every later delivery is then acked alone, so that none of them
// covers it. Every frame is sent under mu, in the order decided: the broker refuses
// (and closes the channel on) an ack of a tag it no longer holds.
//
// Every tag passed to taken must end in settle or leave (handlers defer leave, which
// settles a tag as unacked unless it was settled already).
type acks struct {
	ch  acknowledger
	log *slog.Logger

	mu      sync.Mutex
	open    map[uint64]bool         // taken, not settled
	order   []uint64                // taken tags the acked prefix has not passed, in delivery order
	settled map[uint64]settledState // settled tags of order
	holed   bool                    // a tag was left unacked: acks are single from now on
}

type settledState uint8

const (
	ackDue     settledState = iota // done; not acked yet
	ackedAlone                     // done and acked on its own (it waited behind a slow one)
	keep                           // left unacked, for redelivery
)

func newAcks(ch acknowledger, log *slog.Logger) *acks {
	return &acks{ch: ch, log: log, open: map[uint64]bool{}, settled: map[uint64]settledState{}}
}

// taken registers a delivery; the consumer calls it in delivery order.
func (a *acks) taken(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.open[tag] = true
	if !a.holed {
		a.order = append(a.order, tag)
	}
}

// settle records that tag's work is done: ack (the broker may forget it) or not (it is
// left for redelivery). It acks what it can. A tag settled already is ignored.
func (a *acks) settle(tag uint64, ack bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.open[tag] {
		return
	}
	delete(a.open, tag)
	if a.holed {
		if ack {
			a.send(tag, false)
		}
		return
	}
	a.settled[tag] = keep
	if ack {
		a.settled[tag] = ackDue
	}
	a.advance()
	if len(a.settled) > maxAckBehind {
		for t, st := range a.settled {
			if st == ackDue {
				a.send(t, false)
				a.settled[t] = ackedAlone
			}
		}
	}
}

// leave settles tag unacked unless it was settled already.
func (a *acks) leave(tag uint64) { a.settle(tag, false) }

// advance moves the prefix over the settled tags at the head of order and acks them:
// with one multiple ack up to the last one due, or alone after a tag left unacked.
// Called with mu held.
func (a *acks) advance() {
	var target uint64
	var singles []uint64
	for len(a.order) > 0 {
		t := a.order[0]
		st, done := a.settled[t]
		if !done {
			break
		}
		delete(a.settled, t)
		a.order = a.order[1:]
		switch {
		case st == keep:
			a.holed = true
		case st == ackDue && a.holed:
			singles = append(singles, t)
		case st == ackDue:
			target = t
		}
	}
	if a.holed {
		// The tags still in order are acked alone when they settle.
		for _, t := range a.order {
			if st, done := a.settled[t]; done && st == ackDue {
				singles = append(singles, t)
			}
		}
		a.order, a.settled = nil, nil
	}
	if target != 0 {
		a.send(target, true)
	}
	for _, t := range singles {
		a.send(t, false)
	}
}

func (a *acks) send(tag uint64, multiple bool) {
	if err := a.ch.Ack(tag, multiple); err != nil {
		a.log.Warn("ack request", "delivery_tag", tag, "multiple", multiple, "err", err)
	}
}
