package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// ackRecorder is a channel's acknowledger as the broker applies it: a multiple ack
// covers every delivered, unacked tag up to its own.
type ackRecorder struct {
	mu        sync.Mutex
	delivered map[uint64]bool // unacked
	acked     map[uint64]bool
	frames    int
}

func (r *ackRecorder) Ack(tag uint64, multiple bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames++
	for t := range r.delivered {
		if t == tag || (multiple && t < tag) {
			delete(r.delivered, t)
			r.acked[t] = true
		}
	}
	return nil
}
func (r *ackRecorder) Nack(uint64, bool, bool) error { return nil }
func (r *ackRecorder) Reject(uint64, bool) error     { return nil }

// notifications returns buffered deliveries of notifyCommits of ws at versions, tags
// 1, 2, ….
func notifications(r *ackRecorder, ws uuid.UUID, versions ...int64) chan amqp.Delivery {
	ch := make(chan amqp.Delivery, len(versions))
	for i, v := range versions {
		tag := uint64(i + 1)
		r.delivered[tag] = true
		body := fmt.Sprintf(`{"method":"notifyCommit","params":[{"requestId":"r%d","items":[],"workspaceId":%q,"workspaceVersion":%d}],"id":"e%d","async":true}`,
			v, ws, v, v)
		ch <- amqp.Delivery{Acknowledger: r, DeliveryTag: tag, Body: []byte(body)}
	}
	close(ch)
	return ch
}

// closedClient is a client whose calls fail at once (ErrClosed), with an event consumer
// that counts the versions it delivers.
func closedClient(delivered *[]int64) *Client {
	c := &Client{cfg: DefaultConfig(), log: slog.New(slog.DiscardHandler), ready: make(chan struct{}), pending: map[string]chan []byte{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cancel()
	c.ev.init()
	c.ev.handler = func(u Update) { *delivered = append(*delivered, u.ToVersion) }
	return c
}

// TestEventsBurstAckedInOneFrame: events waiting behind one another are acked with one
// multiple ack once processed, every one of them.
func TestEventsBurstAckedInOneFrame(t *testing.T) {
	var got []int64
	c := closedClient(&got)
	r := &ackRecorder{delivered: map[uint64]bool{}, acked: map[uint64]bool{}}
	acked, err := c.ev.loop(context.Background(), c, notifications(r, uuid.New(), 1, 2, 3, 4, 5, 6, 7, 8))
	if err == nil || !acked {
		t.Fatalf("loop = %v, %v; want the stream's end and acked", acked, err)
	}
	if len(got) != 8 || len(r.acked) != 8 || len(r.delivered) != 0 {
		t.Fatalf("delivered versions %v, acked %v, unacked %v; want all 8 delivered and acked", got, r.acked, r.delivered)
	}
	if r.frames != 1 {
		t.Fatalf("%d ack frames for a burst of 8, want 1", r.frames)
	}
}

// TestEventsAckedOnlyOnceProcessed: when an event fails (a gap whose catch-up fails),
// the events processed before it are acked before the consumer gives up, and neither it
// nor any later one is.
func TestEventsAckedOnlyOnceProcessed(t *testing.T) {
	var got []int64
	c := closedClient(&got)
	r := &ackRecorder{delivered: map[uint64]bool{}, acked: map[uint64]bool{}}
	_, err := c.ev.loop(context.Background(), c, notifications(r, uuid.New(), 1, 2, 3, 5, 6))
	if err == nil {
		t.Fatal("loop passed over a gap whose catch-up failed")
	}
	if len(got) != 3 || len(r.acked) != 3 || !r.acked[1] || !r.acked[2] || !r.acked[3] {
		t.Fatalf("delivered versions %v, acked tags %v; want versions 1-3 delivered and tags 1-3 acked", got, r.acked)
	}
	if !r.delivered[4] || !r.delivered[5] {
		t.Fatalf("unacked tags %v; want 4 (the gap) and 5", r.delivered)
	}
}

// TestEventsAckedBeforeWaiting: once no event waits, the processed ones are acked before
// the consumer waits for more (not left for a later event that may never come), and from
// an unbuffered delivery channel (as the client library hands them over) as well.
func TestEventsAckedBeforeWaiting(t *testing.T) {
	var got []int64
	c := closedClient(&got)
	r := &ackRecorder{delivered: map[uint64]bool{}, acked: map[uint64]bool{}}
	buffered := notifications(r, uuid.New(), 1, 2, 3)
	in := make(chan amqp.Delivery) // unbuffered, never closed: the consumer waits on it
	go func() {
		for d := range buffered {
			in <- d
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.ev.loop(ctx, c, in)
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.acked)
		r.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked %d of 3 processed events while the consumer waits for more; want 3", n)
		}
		time.Sleep(time.Millisecond) // polling, not waiting for an outcome
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("loop ended without an error after its context ended")
	}
}
