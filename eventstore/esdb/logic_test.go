package esdb

// Tests of the parts that need no server: batch recognition over given events, error
// classification, the abandonable call and the $all filter. The server-facing behaviour
// is covered by the conformance suite (esdb_test.go), which needs EVENTSTORE_URL.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stacksync-es/syncservice/eventstore"
)

func events(stream string, firstRev uint64, ids ...uuid.UUID) []*esdb.RecordedEvent {
	out := make([]*esdb.RecordedEvent, len(ids))
	for i, id := range ids {
		rev := firstRev + uint64(i)
		out[i] = &esdb.RecordedEvent{EventID: id, StreamID: stream, EventNumber: rev,
			Position: esdb.Position{Commit: 1000 + rev, Prepare: 1000 + rev}}
	}
	return out
}

func records(ids ...uuid.UUID) []eventstore.Record {
	out := make([]eventstore.Record, len(ids))
	for i, id := range ids {
		out[i] = eventstore.Record{ID: id, Type: "T"}
	}
	return out
}

func TestCheckBatch(t *testing.T) {
	s := &Store{}
	a, b, c, x, y := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	// The window holds the whole stream, revisions 0..4: x a b c y (no case needs a read).
	window := events("s", 0, x, a, b, c, y)
	cases := []struct {
		name    string
		batch   []eventstore.Record
		found   bool
		version uint64 // when found
		overlap bool
	}{
		{"absent", records(uuid.New(), uuid.New()), false, 0, false},
		{"whole batch", records(a, b, c), true, 4, false},
		{"single record", records(y), true, 5, false},
		{"prefix of the run, in order", records(a, b), true, 3, false},
		{"other order", records(b, a), false, 0, true},
		{"new id before an old one", records(uuid.New(), x), false, 0, true},
		{"old ids, not a run", records(c, x), false, 0, true},
		{"run continues past the batch", records(x, a, c), false, 0, true},
	}
	for _, tc := range cases {
		res, found, err := s.checkBatch(context.Background(), nil, "s", window, tc.batch)
		if tc.overlap {
			if !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Errorf("%s: err %v, want ErrInvalidAppend", tc.name, err)
			}
			continue
		}
		if err != nil || found != tc.found {
			t.Errorf("%s: found %v err %v, want found %v", tc.name, found, err, tc.found)
			continue
		}
		if found && (!res.Duplicate || res.StreamVersion != tc.version || res.Position != (eventstore.Position{Commit: 1000 + tc.version - 1, Prepare: 1000 + tc.version - 1})) {
			t.Errorf("%s: result %+v, want duplicate at version %d", tc.name, res, tc.version)
		}
	}
}

func TestTransientIf(t *testing.T) {
	cases := []struct {
		err       error
		transient bool
	}{
		{status.Error(codes.Unavailable, "down"), true},
		{fmt.Errorf("wrapped: %w", status.Error(codes.DeadlineExceeded, "slow")), true},
		{status.Error(codes.InvalidArgument, "bad"), false},
		{status.Error(codes.PermissionDenied, "no"), false},
		{context.DeadlineExceeded, true},
		{errors.New("other"), false},
	}
	for _, c := range cases {
		if got := eventstore.Transient(transientIf(c.err)); got != c.transient {
			t.Errorf("transientIf(%v): transient %v, want %v", c.err, got, c.transient)
		}
	}
}

func TestCallCtxAbandons(t *testing.T) {
	c := &conn{}
	release := make(chan struct{})
	released := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	_, err := callCtx(ctx, c, func() (int, error) {
		<-release
		return 7, nil
	}, func(v int) { released <- v })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("callCtx returned %v, want context.Canceled", err)
	}
	if c.pending.Load() != 1 {
		t.Fatalf("pending %d while the call runs, want 1", c.pending.Load())
	}
	close(release)
	select {
	case v := <-released:
		if v != 7 {
			t.Fatalf("released %d, want 7", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the abandoned result was never released")
	}
	c.calls.Wait()
	if c.pending.Load() != 0 {
		t.Fatalf("pending %d after the call returned", c.pending.Load())
	}
}

func TestOurs(t *testing.T) {
	s := &Store{cfg: Config{StreamPrefix: "p-"}}
	cases := []struct {
		stream, typ string
		want        bool
	}{
		{"p-ws", "Created", true},
		{"q-ws", "Created", false},
		{"$$p-ws", "$metadata", false},
		{"p-ws", "$>", false},
		{"$ce-p", "Created", false},
	}
	for _, c := range cases {
		if got := s.ours(&esdb.RecordedEvent{StreamID: c.stream, EventType: c.typ}); got != c.want {
			t.Errorf("ours(%s, %s) = %v, want %v", c.stream, c.typ, got, c.want)
		}
	}
	ev := s.convert(&esdb.RecordedEvent{StreamID: "p-ws", EventNumber: 4, Position: esdb.Position{Commit: 9, Prepare: 8}})
	if ev.Stream != "ws" || ev.StreamVersion != 5 || ev.Position != (eventstore.Position{Commit: 9, Prepare: 8}) {
		t.Errorf("convert: %+v", ev)
	}
}

// TestBatch: a subscription batch is the first event plus those already waiting, up to
// SubscribeBatch; events at or before the resume point are dropped, events of other
// prefixes advance the resume point without being delivered.
func TestBatch(t *testing.T) {
	s := &Store{cfg: Config{StreamPrefix: "p-", SubscribeBatch: 3}}
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()}
	evs := events("p-a", 0, ids...)
	evs[2].StreamID = "q-b" // another deployment's stream
	ch := make(chan *esdb.RecordedEvent, 8)
	for _, e := range evs[1:] {
		ch <- e
	}
	after := position(evs[0].Position) // evs[0] was delivered before: at the resume point
	got := s.batch(evs[0], ch, &after)
	if len(got) != 1 || got[0].ID != ids[1] || got[0].Stream != "a" {
		t.Fatalf("first batch %+v, want only %s of stream a", got, ids[1])
	}
	if want := position(evs[2].Position); after != want {
		t.Fatalf("after %s, want %s (past the filtered event)", after, want)
	}
	if len(ch) != 2 {
		t.Fatalf("%d events left waiting, want 2 (batch of 3)", len(ch))
	}
	close(ch)
	first := <-ch
	got = s.batch(first, ch, &after)
	if len(got) != 2 || got[0].ID != ids[3] || got[1].ID != ids[4] {
		t.Fatalf("second batch %+v, want %s and %s", got, ids[3], ids[4])
	}
	if want := position(evs[4].Position); after != want {
		t.Fatalf("after %s, want %s", after, want)
	}
}
