package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// waiter is a backend of the store blocked on a lock.
type waiter struct {
	pid       int
	xid       *string // backend_xid: nil while the backend has no transaction id
	waitEvent string
}

// lockWaiters lists the store's backends in the current database that wait on a lock.
func lockWaiters(ctx context.Context, conn *pgx.Conn) ([]waiter, error) {
	rows, err := conn.Query(ctx, `SELECT pid, backend_xid::text, wait_event FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'syncservice-eventstore'
		  AND state = 'active' AND wait_event_type = 'Lock' ORDER BY pid`)
	if err != nil {
		return nil, err
	}
	var out []waiter
	var w waiter
	_, err = pgx.ForEachRow(rows, []any{&w.pid, &w.xid, &w.waitEvent}, func() error {
		out = append(out, w)
		return nil
	})
	return out, err
}

// TestBlockedAppendHasNoTransactionID drives the real append paths into the race that
// broke per-stream order in the global feed. Global readers order by (tx_id,
// global_pos), so an append must not own a transaction id while it waits for another
// append to the same stream: if it got one before the other append got its own, its
// later stream versions would sort first.
//
// The batch below writes a-first (which, before stream locks were taken up front,
// assigned its transaction id) and then has to wait for b-held, which a HoldOpenAppend
// holds. While it waits, a single append to c-target takes c-target's lock and commits;
// then the held append commits and the batch writes c-target's next version. The test
// asserts that the waiting batch has no transaction id, and that the global order yields
// every stream's versions in increasing order.
func TestBlockedAppendHasNoTransactionID(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openStore(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	r := func(data string) eventstore.Record {
		return eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte(data)}
	}

	for _, stream := range []string{"b-held", "c-target"} {
		if _, err := s.Append(ctx, stream, eventstore.NoStream(), r(stream+" 1")); err != nil {
			t.Fatal(err)
		}
	}
	commit, err := s.HoldOpenAppend(ctx, "b-held", r("b-held 2 (held)"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { commit() })

	batchDone := make(chan []eventstore.BatchResult, 1)
	go func() {
		batchDone <- s.AppendBatch(ctx, []eventstore.StreamAppend{
			{Stream: "a-first", Expected: eventstore.Any(), Records: []eventstore.Record{r("a-first (batch)")}},
			{Stream: "b-held", Expected: eventstore.Any(), Records: []eventstore.Record{r("b-held (batch)")}},
			{Stream: "c-target", Expected: eventstore.Any(), Records: []eventstore.Record{r("c-target (batch)")}},
		})
	}()
	var blocked waiter
	testenv.Eventually(t, 10*time.Second, func() error {
		ws, err := lockWaiters(ctx, conn)
		if err != nil {
			return err
		}
		if len(ws) != 1 {
			return fmt.Errorf("%d store backends wait on a lock, want the batch's 1", len(ws))
		}
		blocked = ws[0]
		return nil
	})
	if blocked.xid != nil {
		t.Errorf("the batch append waits (%s lock) for b-held while owning transaction id %s: appends to a stream it then writes may commit first with larger ids and sort after it",
			blocked.waitEvent, *blocked.xid)
	}

	// A single append to c-target, which the batch will write too. Whether it gets
	// through now or waits for the batch depends on the order the batch locks its
	// streams in; either way it must not sort out of c-target's order.
	singleDone := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "c-target", eventstore.Any(), r("c-target (single)"))
		singleDone <- err
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(singleDone) == 1 {
			return nil
		}
		ws, err := lockWaiters(ctx, conn)
		if err != nil {
			return err
		}
		if len(ws) != 2 {
			return fmt.Errorf("the single append has neither finished nor blocked (%d waiters)", len(ws))
		}
		return nil
	})

	if err := commit(); err != nil {
		t.Fatal(err)
	}
	for i, res := range <-batchDone {
		if res.Err != nil {
			t.Fatalf("batch append %d: %v", i, res.Err)
		}
	}
	if err := <-singleDone; err != nil {
		t.Fatalf("single append to c-target: %v", err)
	}

	const want = 7 // b-held 1-3, c-target 1-3, a-first 1
	var all []eventstore.RecordedEvent
	testenv.Eventually(t, 20*time.Second, func() error {
		evs, err := s.ReadAll(ctx, eventstore.Start, 100)
		if err != nil {
			return err
		}
		if len(evs) != want {
			return fmt.Errorf("read all returned %d events, want %d", len(evs), want)
		}
		all = evs
		return nil
	})
	last := map[string]uint64{}
	for _, e := range all {
		t.Logf("global %s: %s@%d %s", e.Position, e.Stream, e.StreamVersion, e.Data)
	}
	for _, e := range all {
		if e.StreamVersion != last[e.Stream]+1 {
			t.Fatalf("read all yields %s@%d (at %s) after version %d of the same stream",
				e.Stream, e.StreamVersion, e.Position, last[e.Stream])
		}
		last[e.Stream] = e.StreamVersion
	}
	if last["a-first"] != 1 || last["b-held"] != 3 || last["c-target"] != 3 {
		t.Fatalf("stream versions read %v, want a-first 1, b-held 3, c-target 3", last)
	}
}

// TestFirstAppendsToNewStreamsKeepOrder races appends to streams that do not exist yet.
// Two first appends to one stream both insert its row; the loser of that race used to
// have a transaction id from its speculative insert before it found the winner's row
// and waited, so it could write version 2 with a smaller id than the winner's version 1
// and the global order yielded version 2 first. Each round starts its appenders together
// on a fresh stream; the global order must yield every stream's versions as 1, 2, 3, ...
func TestFirstAppendsToNewStreamsKeepOrder(t *testing.T) {
	const rounds, appenders = 40, 6
	s := openStore(t, testenv.PostgresDSN(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round := range rounds {
		stream := fmt.Sprintf("fresh-%d", round)
		start := make(chan struct{})
		errc := make(chan error, appenders)
		for a := range appenders {
			go func() {
				<-start
				_, err := s.Append(ctx, stream, eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte(fmt.Sprint(a))})
				errc <- err
			}()
		}
		close(start)
		for range appenders {
			if err := <-errc; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	var all []eventstore.RecordedEvent
	from := eventstore.Start
	testenv.Eventually(t, 20*time.Second, func() error {
		evs, err := s.ReadAll(ctx, from, 1000)
		if err != nil {
			return err
		}
		all = append(all, evs...)
		if len(evs) > 0 {
			from = evs[len(evs)-1].Position
		}
		if len(all) != rounds*appenders {
			return fmt.Errorf("read all returned %d events, want %d", len(all), rounds*appenders)
		}
		return nil
	})
	last := map[string]uint64{}
	for _, e := range all {
		if e.StreamVersion != last[e.Stream]+1 {
			t.Fatalf("read all yields %s@%d (at %s) after version %d of the same stream",
				e.Stream, e.StreamVersion, e.Position, last[e.Stream])
		}
		last[e.Stream] = e.StreamVersion
	}
}
