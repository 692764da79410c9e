package rpc

import (
	"log/slog"
	"sync"
)

// acknowledger is what acks needs of the consumer channel (*amqp.Channel).
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
}

// acks settles a session's deliveries with as few ack frames as it can: a delivery
// whose work is done is acked together with every delivery before it on the channel
// once all of those are done too, with one basic.ack multiple=true. Handlers finish out
// of order, and commits finish in groups (the store appends several in one round
// trip), so one frame often covers several requests: each frame is a message through
// the broker's channel and queue processes.
//
// A delivery is never covered by an ack before its own work is done. A delivery left
// unacked (to be redelivered: the reply may be lost, or the session stops first) ends
// the multiple acks: every later delivery is then acked alone, so that none of them
// covers it.
//
// Every tag passed to taken must end in exactly one settle or leave; leave settles a
// tag as unacked unless it was settled already (handlers defer it).
type acks struct {
	ch  acknowledger
	log *slog.Logger

	mu       sync.Mutex
	open     map[uint64]bool // taken, not settled
	order    []uint64        // taken tags not yet passed by the acked prefix, in delivery order
	settled  map[uint64]bool // tags of order settled: true = ack, false = leave unacked
	target   uint64          // the last tag of the prefix that may be acked
	sent     uint64          // the last tag acked with multiple=true
	holed    bool            // a tag was left unacked: acks are single from now on
	flushing bool            // a goroutine is sending the prefix's ack
}

func newAcks(ch acknowledger, log *slog.Logger) *acks {
	return &acks{ch: ch, log: log, open: map[uint64]bool{}, settled: map[uint64]bool{}}
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
// left for redelivery). It acks what it can.
func (a *acks) settle(tag uint64, ack bool) {
	a.mu.Lock()
	if !a.open[tag] {
		a.mu.Unlock()
		return // settled already
	}
	delete(a.open, tag)
	if a.holed {
		a.mu.Unlock()
		if ack {
			a.send(tag, false)
		}
		return
	}
	a.settled[tag] = ack
	singles := a.advance()
	flush := !a.flushing && a.target > a.sent
	if flush {
		a.flushing = true
	}
	a.mu.Unlock()
	for _, t := range singles {
		a.send(t, false)
	}
	if flush {
		a.flush()
	}
}

// leave settles tag unacked unless it was settled already.
func (a *acks) leave(tag uint64) { a.settle(tag, false) }

// advance moves the prefix over the settled tags at the head of order and returns the
// tags to ack alone (those after a tag left unacked). Called with mu held.
func (a *acks) advance() (singles []uint64) {
	for len(a.order) > 0 {
		t := a.order[0]
		ack, done := a.settled[t]
		if !done {
			break
		}
		delete(a.settled, t)
		a.order = a.order[1:]
		switch {
		case !ack:
			a.holed = true
		case a.holed:
			singles = append(singles, t)
		default:
			a.target = t
		}
	}
	if a.holed {
		// The tags still in order are acked alone when they settle.
		for _, t := range a.order {
			if ack, done := a.settled[t]; done && ack {
				singles = append(singles, t)
			}
		}
		a.order, a.settled = nil, nil
	}
	return singles
}

// flush sends the prefix's ack, and again while other handlers moved it meanwhile
// (their frames are saved): one goroutine at a time, so the multiple acks go out in
// increasing order.
func (a *acks) flush() {
	a.mu.Lock()
	for a.target > a.sent {
		t := a.target
		a.mu.Unlock()
		a.send(t, true)
		a.mu.Lock()
		a.sent = t
	}
	a.flushing = false
	a.mu.Unlock()
}

func (a *acks) send(tag uint64, multiple bool) {
	if err := a.ch.Ack(tag, multiple); err != nil {
		a.log.Warn("ack request", "delivery_tag", tag, "multiple", multiple, "err", err)
	}
}
