package projections

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// readCounter records the event data every read of the global order returned.
type readCounter struct {
	mu        sync.Mutex
	reads     int
	bytesRead []int64 // per read call
	events    []int
}

func (c *readCounter) add(evs []eventstore.RecordedEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.bytesRead = append(c.bytesRead, eventstore.Bytes(evs))
	c.events = append(c.events, len(evs))
}

// countingPG is the PostgreSQL store with its reads of the global order recorded.
type countingPG struct {
	*postgres.Store
	readCounter
}

func (s *countingPG) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := s.Store.ReadAll(ctx, from, limit)
	s.add(evs)
	return evs, err
}

func (s *countingPG) ReadAllBytes(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	evs, err := s.Store.ReadAllBytes(ctx, from, limit, maxBytes)
	s.add(evs)
	return evs, err
}

// countingMem is a store without eventstore.LagReader, its reads recorded.
type countingMem struct {
	*memstore.Store
	readCounter
}

func (s *countingMem) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := s.Store.ReadAll(ctx, from, limit)
	s.add(evs)
	return evs, err
}

func (s *countingMem) ReadAllBytes(ctx context.Context, from eventstore.Position, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	evs, err := s.Store.ReadAllBytes(ctx, from, limit, maxBytes)
	s.add(evs)
	return evs, err
}

// bigRecords returns n records of about 3.5 MiB each.
func bigRecords(n int) []eventstore.Record {
	out := make([]eventstore.Record, n)
	for i := range out {
		out[i] = eventstore.Record{ID: uuid.New(), Type: "Big", Data: bytes.Repeat([]byte{'a' + byte(i)}, 3<<20+1<<19)}
	}
	return out
}

// The lag of a model (measured on every /metrics scrape and by `syncctl projections
// status`) is counted without reading event data from the PostgreSQL store, and in
// pages bounded in bytes from a store that cannot count; both agree with the backlog.
func TestLagReadsNoEventData(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	pg := &countingPG{Store: e.store}
	if _, err := e.store.Append(ctx, "big", eventstore.NoStream(), bigRecords(4)...); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testenv.Eventually(t, 20*time.Second, func() error {
		l, err := lagAfter(ctx, pg, eventstore.Start, 3, start)
		if err != nil {
			return err
		}
		if l.Events != 3 || !l.Capped {
			return errors.New("not every event visible yet")
		}
		return nil
	})
	l, err := lagAfter(ctx, pg, eventstore.Start, 10, time.Now().Add(time.Minute))
	if err != nil || l.Events != 4 || l.Capped || l.Behind < time.Minute {
		t.Fatalf("lag %+v, %v; want 4 events, not capped, behind at least a minute", l, err)
	}
	if pg.reads != 0 {
		t.Fatalf("measuring the lag read events %d times (%v bytes): want a count without event data", pg.reads, pg.bytesRead)
	}

	mem := &countingMem{Store: memstore.New()}
	defer mem.Close()
	if _, err := mem.Append(ctx, "big", eventstore.NoStream(), bigRecords(6)...); err != nil {
		t.Fatal(err)
	}
	l, err = lagAfter(ctx, mem, eventstore.Start, 10, time.Now().Add(time.Minute))
	if err != nil || l.Events != 6 || l.Capped || l.Behind < time.Minute {
		t.Fatalf("lag %+v, %v; want 6 events, not capped, behind at least a minute", l, err)
	}
	if mem.reads < 2 {
		t.Fatalf("%d reads for 21 MiB of events: want pages bounded in bytes", mem.reads)
	}
	for i, b := range mem.bytesRead {
		if mem.events[i] > 1 && b > 16<<20 {
			t.Fatalf("read %d returned %d events of %d bytes: want at most 16 MiB", i, mem.events[i], b)
		}
	}
}
