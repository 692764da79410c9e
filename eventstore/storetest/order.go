package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// checkStreamOrder reports the first event of evs (read in global order from Start) whose
// stream version is not its stream's previous version plus one: within the global order,
// every stream's versions must be 1, 2, 3, ... Readers downstream (the notifier, the
// projectors) rely on it.
func checkStreamOrder(reader string, evs []eventstore.RecordedEvent) error {
	last := map[string]uint64{}
	for i, e := range evs {
		if e.StreamVersion != last[e.Stream]+1 {
			return fmt.Errorf("%s: global event %d (at %s) is %s@%d, but the previous event of %s in the global order was version %d",
				reader, i, e.Position, e.Stream, e.StreamVersion, e.Stream, last[e.Stream])
		}
		last[e.Stream] = e.StreamVersion
	}
	return nil
}

// testGlobalOrderKeepsStreamOrder runs many appenders on a few streams at once: single
// appends and, if the store is an eventstore.BatchAppender, batches that span every stream
// (a batch writes one stream, then may wait for another's lock). Meanwhile a ReadAll
// follower and a subscription read the global order. Per stream, the versions each reader
// yields must be strictly increasing and contiguous, although appends to one stream
// contend with each other and with batches.
func testGlobalOrderKeepsStreamOrder(t *testing.T, s eventstore.Store) {
	const streams, singles, perSingle, batchers, perBatch = 3, 6, 12, 2, 8
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("ordered-%d", i)
	}
	ba, _ := s.(eventstore.BatchAppender)
	want := 0
	for w := range singles {
		for i := range perSingle {
			want += 1 + (w+i)%2
		}
	}
	if ba != nil {
		want += batchers * perBatch * streams
	}

	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	c := &collector{}
	stopSub, _ := subscribe(t, s, eventstore.Start, c.handle)

	errc := make(chan error, singles+batchers+1)
	var writers sync.WaitGroup
	for w := range singles {
		writers.Add(1)
		go func() {
			defer writers.Done()
			appendSingles(ctx, s, names, w, perSingle, errc)
		}()
	}
	if ba != nil {
		for w := range batchers {
			writers.Add(1)
			go func() {
				defer writers.Done()
				appendBatches(ctx, ba, names, w, perBatch, errc)
			}()
		}
	}

	// The follower reads in small pages while the writers run, resuming each time from
	// the last position it saw.
	var followed []eventstore.RecordedEvent
	followerDone := make(chan struct{})
	go func() {
		defer close(followerDone)
		followed = followAll(ctx, s, want, errc)
	}()

	writers.Wait()
	if len(errc) > 0 {
		cancel()
	}
	<-followerDone
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if err := checkStreamOrder("read all follower", followed); err != nil {
		t.Fatal(err)
	}

	c.waitCount(t, want)
	if err := stopSub(); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription ended with %v, want context.Canceled", err)
	}
	c.mu.Lock()
	delivered := append([]eventstore.RecordedEvent(nil), c.events...)
	c.mu.Unlock()
	if len(delivered) != want {
		t.Fatalf("subscription delivered %d events, want %d", len(delivered), want)
	}
	if err := checkStreamOrder("subscription", delivered); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		wantVersion(t, s, n, uint64(countStream(followed, n)))
	}
}

// appendSingles is single appender w of testGlobalOrderKeepsStreamOrder: n appends of
// one or two records, to the streams in turn. It reports the first failure on errc.
func appendSingles(ctx context.Context, s eventstore.Store, names []string, w, n int, errc chan<- error) {
	streams := len(names)
	for i := range n {
		stream := names[(w+i)%streams]
		if _, err := s.Append(ctx, stream, eventstore.Any(), recs(1+(w+i)%2, fmt.Sprintf("s%d-%d", w, i))...); err != nil {
			errc <- fmt.Errorf("appender %d append %d to %s: %w", w, i, stream, err)
			return
		}
	}
}

// appendBatches is batch appender w of testGlobalOrderKeepsStreamOrder: n batches of
// one record to every stream, starting at a different stream each time. It reports the
// first failure on errc.
func appendBatches(ctx context.Context, ba eventstore.BatchAppender, names []string, w, n int, errc chan<- error) {
	streams := len(names)
	for i := range n {
		batch := make([]eventstore.StreamAppend, streams)
		for k := range batch {
			batch[k] = eventstore.StreamAppend{
				Stream:   names[(w+i+k)%streams],
				Expected: eventstore.Any(),
				Records:  recs(1, fmt.Sprintf("b%d-%d", w, i)),
			}
		}
		for k, res := range ba.AppendBatch(ctx, batch) {
			if res.Err != nil {
				errc <- fmt.Errorf("batcher %d batch %d append to %s: %w", w, i, batch[k].Stream, res.Err)
				return
			}
		}
	}
}

// followAll follows the global order with ReadAll in pages of 5 until it has seen want
// events, and returns what it saw. It reports on errc, and stops at, a duplicate, a
// position at or before its cursor, a read error or a timeout.
func followAll(ctx context.Context, s eventstore.Store, want int, errc chan<- error) []eventstore.RecordedEvent {
	var followed []eventstore.RecordedEvent
	seen := map[uuid.UUID]bool{}
	from := eventstore.Start
	deadline := time.Now().Add(visibleTimeout + 20*time.Second)
	for len(followed) < want {
		if time.Now().After(deadline) {
			errc <- fmt.Errorf("read all follower saw %d of %d events", len(followed), want)
			return followed
		}
		evs, err := s.ReadAll(ctx, from, 5)
		if err != nil {
			errc <- fmt.Errorf("read all follower from %s: %w", from, err)
			return followed
		}
		for _, e := range evs {
			if seen[e.ID] || !from.Less(e.Position) {
				errc <- fmt.Errorf("read all follower: event %s at %s after cursor %s (seen before: %v)", e.ID, e.Position, from, seen[e.ID])
				return followed
			}
			seen[e.ID] = true
			from = e.Position
			followed = append(followed, e)
		}
		if len(evs) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return followed
}

// waitCount waits until the subscription has delivered at least want events, failing on
// the collector's error or after visibleTimeout.
func (c *collector) waitCount(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(visibleTimeout)
	for {
		c.mu.Lock()
		n, err := len(c.events), c.err
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription delivered %d of %d events after %v", n, want, visibleTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countStream counts the events of stream in evs.
func countStream(evs []eventstore.RecordedEvent, stream string) int {
	n := 0
	for _, e := range evs {
		if e.Stream == stream {
			n++
		}
	}
	return n
}
