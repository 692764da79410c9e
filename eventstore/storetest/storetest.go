// Package storetest owns the conformance suite of the eventstore contract: every backend
// runs Run against a real server (or, for memstore, in memory) and must pass all of it.
//
// The suite only uses the eventstore API, plus the optional Holder interface that lets a
// backend hold an append transaction open so that the never-skip rule of the global order
// can be tested deterministically. It must never import the rest of the project.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Holder is implemented by backends that can start an append and leave its transaction
// uncommitted, so that a later append commits first. The suite uses it to prove that
// ReadAll and Subscribe never skip an event that commits out of order.
//
// HoldOpenAppend appends rec to stream (expected version Any) and returns once the
// record has taken its place in the global order but before it is committed. commit
// commits it. The held append may block other appends to the same stream; the suite only
// appends to other streams while one is held.
type Holder interface {
	HoldOpenAppend(ctx context.Context, stream string, rec eventstore.Record) (commit func() error, err error)
}

// visibleTimeout bounds how long the suite waits for committed events to become visible
// to global readers (a backend may hold them back while older transactions are open,
// including unrelated ones on a shared server).
const visibleTimeout = 20 * time.Second

// Run runs the conformance suite. newStore must return a fresh, empty store for each
// subtest; Run closes it when the subtest ends. Tests of the optional interfaces
// (Holder, eventstore.BatchAppender, eventstore.BoundedReader) skip for stores that do not implement them;
// CountAfter runs for every store (eventstore.LagReader, or the bounded-read fallback).
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"AppendReadRoundTrip", testAppendReadRoundTrip},
		{"ExpectedVersions", testExpectedVersions},
		{"WrongVersionWritesNothing", testWrongVersionWritesNothing},
		{"ConcurrentSameVersionOneWinner", testConcurrentSameVersion},
		{"ConcurrentAppendersGapFree", testConcurrentAppendersGapFree},
		{"IdempotentAppend", testIdempotentAppend},
		{"IdempotencyConflicts", testIdempotencyConflicts},
		{"ReadStreamPaging", testReadStreamPaging},
		{"ReadAllOrderAndPaging", testReadAllOrderAndPaging},
		{"ReadStreamBounded", testReadStreamBounded},
		{"ReadAllBounded", testReadAllBounded},
		{"CountAfter", testCountAfter},
		{"ReadAllNeverSkipsHeldTransaction", testReadAllHeldTransaction},
		{"ReadAllNeverSkipsUnderConcurrency", testReadAllConcurrentWriters},
		{"GlobalOrderKeepsStreamOrder", testGlobalOrderKeepsStreamOrder},
		{"SubscribeCatchUpThenLive", testSubscribeCatchUpThenLive},
		{"SubscribeResumeFromCheckpoint", testSubscribeResume},
		{"SubscribeNeverSkipsHeldTransaction", testSubscribeHeldTransaction},
		{"SubscribeHandlerErrorStops", testSubscribeHandlerError},
		{"SubscribeCancelReturnsPromptly", testSubscribeCancel},
		{"BadInput", testBadInput},
		{"RecordSizeLimit", testRecordSizeLimit},
		{"Closed", testClosed},
		{"BatchMixedOutcomes", testBatchMixedOutcomes},
		{"BatchRetryIsDuplicate", testBatchRetryIsDuplicate},
		{"BatchConcurrentNoDeadlock", testBatchConcurrentNoDeadlock},
		{"BatchClosed", testBatchClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// ---- helpers ----

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func rec(typ string, data string) eventstore.Record {
	return eventstore.Record{ID: uuid.New(), Type: typ, Data: []byte(data)}
}

func recs(n int, prefix string) []eventstore.Record {
	out := make([]eventstore.Record, n)
	for i := range out {
		out[i] = rec("Test", fmt.Sprintf(`{"%s":%d}`, prefix, i))
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, rs ...eventstore.Record) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctxT(t), stream, exp, rs...)
	if err != nil {
		t.Fatalf("append %d records to %s (expected %s): %v", len(rs), stream, exp, err)
	}
	return res
}

func readStream(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(ctxT(t), stream, 1, 100000)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	return evs
}

// readAllUntil follows the global order from Start in pages of page events until it has
// seen want events, failing on a duplicate, an out-of-order position or a timeout.
func readAllUntil(t *testing.T, s eventstore.Store, want, page int) []eventstore.RecordedEvent {
	t.Helper()
	var got []eventstore.RecordedEvent
	seen := map[uuid.UUID]bool{}
	from := eventstore.Start
	deadline := time.Now().Add(visibleTimeout)
	for len(got) < want {
		evs, err := s.ReadAll(ctxT(t), from, page)
		if err != nil {
			t.Fatalf("read all from %s: %v", from, err)
		}
		if len(evs) > page {
			t.Fatalf("read all limit %d returned %d events", page, len(evs))
		}
		for _, e := range evs {
			if !from.Less(e.Position) {
				t.Fatalf("read all from %s returned event at %s, not after it", from, e.Position)
			}
			if seen[e.ID] {
				t.Fatalf("read all returned event %s twice", e.ID)
			}
			seen[e.ID] = true
			from = e.Position
			got = append(got, e)
		}
		if len(evs) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("read all: saw %d of %d events after %v", len(got), want, visibleTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(got) != want {
		t.Fatalf("read all: got %d events, want %d", len(got), want)
	}
	return got
}

func checkSame(t *testing.T, got eventstore.RecordedEvent, want eventstore.Record, stream string, version uint64) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Metadata, want.Metadata) {
		t.Fatalf("event %s@%d: got {%s %s %q %q}, want {%s %s %q %q}", stream, version,
			got.ID, got.Type, got.Data, got.Metadata, want.ID, want.Type, want.Data, want.Metadata)
	}
	if got.Stream != stream || got.StreamVersion != version {
		t.Fatalf("event %s: at %s@%d, want %s@%d", got.ID, got.Stream, got.StreamVersion, stream, version)
	}
	if got.RecordedAt.IsZero() {
		t.Fatalf("event %s@%d: RecordedAt is zero", stream, version)
	}
	if got.Position.IsZero() {
		t.Fatalf("event %s@%d: Position is the start position", stream, version)
	}
}

func wantWrongVersion(t *testing.T, err error, stream string, actual uint64) {
	t.Helper()
	var wv *eventstore.WrongVersionError
	if !errors.As(err, &wv) {
		t.Fatalf("append to %s: got %v, want *WrongVersionError", stream, err)
	}
	if !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("append to %s: %v is not ErrWrongVersion", stream, err)
	}
	if wv.Actual != actual || wv.Stream != stream {
		t.Fatalf("wrong version error %+v: want stream %s actual %d", wv, stream, actual)
	}
}

func wantVersion(t *testing.T, s eventstore.Store, stream string, v uint64) {
	t.Helper()
	got, err := s.StreamVersion(ctxT(t), stream)
	if err != nil {
		t.Fatalf("stream version %s: %v", stream, err)
	}
	if got != v {
		t.Fatalf("stream version %s = %d, want %d", stream, got, v)
	}
	if n := len(readStream(t, s, stream)); uint64(n) != v {
		t.Fatalf("stream %s holds %d events, want %d", stream, n, v)
	}
}

// ---- append and read ----

func testAppendReadRoundTrip(t *testing.T, s eventstore.Store) {
	a := []eventstore.Record{
		{ID: uuid.New(), Type: "Created", Data: []byte(`{"name":"a"}`), Metadata: []byte(`{"user":"u1"}`)},
		{ID: uuid.New(), Type: "Binary", Data: []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}},
		{ID: uuid.New(), Type: "Empty"},
	}
	r1 := mustAppend(t, s, "ws-a", eventstore.NoStream(), a...)
	if r1.StreamVersion != 3 || r1.Duplicate || r1.Position.IsZero() {
		t.Fatalf("first append result %+v, want version 3, not duplicate, non-zero position", r1)
	}
	b := rec("Renamed", `{"name":"b"}`)
	r2 := mustAppend(t, s, "ws-b", eventstore.Any(), b)
	if r2.StreamVersion != 1 || !r1.Position.Less(r2.Position) {
		t.Fatalf("second append result %+v after %+v: want version 1 and a later position", r2, r1)
	}
	c := rec("Renamed", `{"name":"c"}`)
	r3 := mustAppend(t, s, "ws-a", eventstore.Exact(3), c)
	if r3.StreamVersion != 4 || !r2.Position.Less(r3.Position) {
		t.Fatalf("third append result %+v after %+v: want version 4 and a later position", r3, r2)
	}

	got := readStream(t, s, "ws-a")
	want := append(append([]eventstore.Record{}, a...), c)
	if len(got) != len(want) {
		t.Fatalf("stream ws-a: %d events, want %d", len(got), len(want))
	}
	for i := range want {
		checkSame(t, got[i], want[i], "ws-a", uint64(i+1))
		if i > 0 && !got[i-1].Position.Less(got[i].Position) {
			t.Fatalf("stream positions not increasing: %s then %s", got[i-1].Position, got[i].Position)
		}
	}
	if got[2].Position != r1.Position || got[3].Position != r3.Position {
		t.Fatalf("read positions %s, %s differ from append results %s, %s", got[2].Position, got[3].Position, r1.Position, r3.Position)
	}
	wantVersion(t, s, "ws-a", 4)
	wantVersion(t, s, "ws-b", 1)

	all := readAllUntil(t, s, 5, 100)
	order := []struct {
		r       eventstore.Record
		stream  string
		version uint64
	}{{a[0], "ws-a", 1}, {a[1], "ws-a", 2}, {a[2], "ws-a", 3}, {b, "ws-b", 1}, {c, "ws-a", 4}}
	for i, o := range order {
		checkSame(t, all[i], o.r, o.stream, o.version)
	}
}

func testExpectedVersions(t *testing.T, s eventstore.Store) {
	// NoStream on a new stream, then on an existing one.
	mustAppend(t, s, "s", eventstore.NoStream(), rec("T", "1"))
	_, err := s.Append(ctxT(t), "s", eventstore.NoStream(), rec("T", "x"))
	wantWrongVersion(t, err, "s", 1)

	// Exact(0) is NoStream.
	_, err = s.Append(ctxT(t), "s", eventstore.Exact(0), rec("T", "x"))
	wantWrongVersion(t, err, "s", 1)
	mustAppend(t, s, "s0", eventstore.Exact(0), rec("T", "1"))

	// Exact matches only the current version.
	mustAppend(t, s, "s", eventstore.Exact(1), rec("T", "2"), rec("T", "3"))
	for _, v := range []uint64{1, 2, 4, 100} {
		_, err = s.Append(ctxT(t), "s", eventstore.Exact(v), rec("T", "x"))
		wantWrongVersion(t, err, "s", 3)
	}
	// Exact on a stream that does not exist.
	_, err = s.Append(ctxT(t), "nope", eventstore.Exact(1), rec("T", "x"))
	wantWrongVersion(t, err, "nope", 0)

	// Any on new and existing streams.
	if r := mustAppend(t, s, "s", eventstore.Any(), rec("T", "4")); r.StreamVersion != 4 {
		t.Fatalf("any on existing stream: version %d, want 4", r.StreamVersion)
	}
	if r := mustAppend(t, s, "fresh", eventstore.Any(), rec("T", "1")); r.StreamVersion != 1 {
		t.Fatalf("any on new stream: version %d, want 1", r.StreamVersion)
	}
	wantVersion(t, s, "s", 4)
	wantVersion(t, s, "s0", 1)
	wantVersion(t, s, "fresh", 1)
	wantVersion(t, s, "nope", 0)
}

func testWrongVersionWritesNothing(t *testing.T, s eventstore.Store) {
	first := rec("T", "1")
	mustAppend(t, s, "s", eventstore.NoStream(), first)
	bad := recs(3, "bad")
	_, err := s.Append(ctxT(t), "s", eventstore.Exact(5), bad...)
	wantWrongVersion(t, err, "s", 1)
	wantVersion(t, s, "s", 1)
	// The rejected ids were not consumed: they can be appended for real now.
	r := mustAppend(t, s, "s", eventstore.Exact(1), bad...)
	if r.StreamVersion != 4 || r.Duplicate {
		t.Fatalf("append of previously rejected records: %+v, want version 4, not duplicate", r)
	}
	all := readAllUntil(t, s, 4, 10)
	if all[0].ID != first.ID || all[1].ID != bad[0].ID {
		t.Fatalf("global order holds unexpected events: %s, %s", all[0].ID, all[1].ID)
	}
}

func testConcurrentSameVersion(t *testing.T, s eventstore.Store) {
	const n = 8
	for round := uint64(0); round < 3; round++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		res := make([]eventstore.AppendResult, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res[i], errs[i] = s.Append(ctxT(t), "race", eventstore.Exact(round), rec("T", fmt.Sprintf("r%d-%d", round, i)))
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			if err == nil {
				winners++
				if res[i].StreamVersion != round+1 {
					t.Fatalf("round %d: winner got version %d", round, res[i].StreamVersion)
				}
				continue
			}
			wantWrongVersion(t, err, "race", round+1)
		}
		if winners != 1 {
			t.Fatalf("round %d: %d appenders won at expected version %d, want exactly 1", round, winners, round)
		}
		wantVersion(t, s, "race", round+1)
	}
}

func testConcurrentAppendersGapFree(t *testing.T, s eventstore.Store) {
	const writers, each = 6, 8
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	mine := make([][]uuid.UUID, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				v, err := s.StreamVersion(ctxT(t), "hot")
				if err != nil {
					errc <- err
					return
				}
				r := rec("T", fmt.Sprintf("w%d-%d", w, i))
				res, err := s.Append(ctxT(t), "hot", eventstore.Exact(v), r)
				if errors.Is(err, eventstore.ErrWrongVersion) || eventstore.Transient(err) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				if res.StreamVersion != v+1 {
					errc <- fmt.Errorf("append at expected %d landed at %d", v, res.StreamVersion)
					return
				}
				mine[w] = append(mine[w], r.ID)
				i++
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	evs := readStream(t, s, "hot")
	if len(evs) != writers*each {
		t.Fatalf("stream holds %d events, want %d", len(evs), writers*each)
	}
	at := map[uuid.UUID]int{}
	for i, e := range evs {
		if e.StreamVersion != uint64(i+1) {
			t.Fatalf("event %d has version %d: versions not gap-free", i, e.StreamVersion)
		}
		at[e.ID] = i
	}
	for w, ids := range mine {
		for i, id := range ids {
			if _, ok := at[id]; !ok {
				t.Fatalf("writer %d's event %d missing", w, i)
			}
			if i > 0 && at[ids[i-1]] > at[id] {
				t.Fatalf("writer %d's events out of order", w)
			}
		}
	}
}

// ---- idempotency ----

func testIdempotentAppend(t *testing.T, s eventstore.Store) {
	batch := recs(2, "b")
	orig := mustAppend(t, s, "s", eventstore.NoStream(), batch...)

	again := mustAppend(t, s, "s", eventstore.NoStream(), batch...)
	if !again.Duplicate || again.StreamVersion != orig.StreamVersion || again.Position != orig.Position {
		t.Fatalf("retry result %+v, want the original %+v with Duplicate", again, orig)
	}
	anyAgain := mustAppend(t, s, "s", eventstore.Any(), batch...)
	if !anyAgain.Duplicate || anyAgain.StreamVersion != orig.StreamVersion || anyAgain.Position != orig.Position {
		t.Fatalf("retry with Any: %+v, want the original %+v with Duplicate", anyAgain, orig)
	}
	wantVersion(t, s, "s", 2)

	// The stream moved on; a late retry of the first batch is still a duplicate.
	mustAppend(t, s, "s", eventstore.Exact(2), rec("T", "3"))
	late := mustAppend(t, s, "s", eventstore.NoStream(), batch...)
	if !late.Duplicate || late.StreamVersion != orig.StreamVersion || late.Position != orig.Position {
		t.Fatalf("late retry: %+v, want the original %+v with Duplicate", late, orig)
	}
	wantVersion(t, s, "s", 3)
	readAllUntil(t, s, 3, 10)

	// Single-record batches too.
	one := rec("T", "one")
	o := mustAppend(t, s, "single", eventstore.Any(), one)
	o2 := mustAppend(t, s, "single", eventstore.Any(), one)
	if !o2.Duplicate || o2.StreamVersion != 1 || o2.Position != o.Position {
		t.Fatalf("single retry: %+v, want %+v with Duplicate", o2, o)
	}
	wantVersion(t, s, "single", 1)
}

func testIdempotencyConflicts(t *testing.T, s eventstore.Store) {
	batch := recs(2, "b")
	mustAppend(t, s, "s", eventstore.NoStream(), batch...)
	fresh := rec("T", "fresh")

	wantConflict := func(what string, stream string, exp eventstore.ExpectedVersion, rs ...eventstore.Record) {
		t.Helper()
		res, err := s.Append(ctxT(t), stream, exp, rs...)
		if err == nil {
			t.Fatalf("%s: append succeeded with %+v, want an error", what, res)
		}
		if !errors.Is(err, eventstore.ErrInvalidAppend) && !errors.Is(err, eventstore.ErrWrongVersion) {
			t.Fatalf("%s: %v, want ErrInvalidAppend or ErrWrongVersion", what, err)
		}
	}
	wantConflict("overlap: old id plus new id", "s", eventstore.Exact(2), batch[1], fresh)
	wantConflict("overlap: new id plus old id", "s", eventstore.Any(), fresh, batch[0])
	wantConflict("overlap: batch plus one more", "s", eventstore.Exact(2), batch[0], batch[1], fresh)
	wantConflict("same ids in another order", "s", eventstore.Any(), batch[1], batch[0])
	wantConflict("same ids, other stream", "other", eventstore.Any(), batch...)
	wantConflict("one id, other stream", "other", eventstore.NoStream(), batch[0])
	wantVersion(t, s, "s", 2)
	wantVersion(t, s, "other", 0)

	// fresh was never written: it still appends.
	if r := mustAppend(t, s, "s", eventstore.Exact(2), fresh); r.Duplicate || r.StreamVersion != 3 {
		t.Fatalf("append of fresh record: %+v", r)
	}
	readAllUntil(t, s, 3, 10)
}

// ---- reads ----

func testReadStreamPaging(t *testing.T, s eventstore.Store) {
	rs := recs(10, "p")
	mustAppend(t, s, "s", eventstore.NoStream(), rs[:4]...)
	mustAppend(t, s, "other", eventstore.NoStream(), rec("T", "o"))
	mustAppend(t, s, "s", eventstore.Exact(4), rs[4:]...)

	cases := []struct {
		from  uint64
		limit int
		first uint64 // 0: empty
		n     int
	}{
		{1, 3, 1, 3}, {4, 3, 4, 3}, {7, 3, 7, 3}, {10, 3, 10, 1}, {11, 3, 0, 0},
		{0, 2, 1, 2}, {1, 100, 1, 10}, {5, 1, 5, 1}, {1000, 10, 0, 0},
	}
	for _, c := range cases {
		evs, err := s.ReadStream(ctxT(t), "s", c.from, c.limit)
		if err != nil {
			t.Fatalf("read s from %d limit %d: %v", c.from, c.limit, err)
		}
		if len(evs) != c.n {
			t.Fatalf("read s from %d limit %d: %d events, want %d", c.from, c.limit, len(evs), c.n)
		}
		for i, e := range evs {
			v := c.first + uint64(i)
			checkSame(t, e, rs[v-1], "s", v)
		}
	}
	// Paging through the whole stream.
	var got []eventstore.RecordedEvent
	for from := uint64(1); ; {
		evs, err := s.ReadStream(ctxT(t), "s", from, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		got = append(got, evs...)
		from = evs[len(evs)-1].StreamVersion + 1
	}
	if len(got) != 10 {
		t.Fatalf("paged read: %d events, want 10", len(got))
	}

	evs, err := s.ReadStream(ctxT(t), "missing", 1, 10)
	if err != nil || len(evs) != 0 {
		t.Fatalf("read missing stream: %d events, %v; want empty, nil", len(evs), err)
	}
	wantVersion(t, s, "missing", 0)
}

func testReadAllOrderAndPaging(t *testing.T, s eventstore.Store) {
	var want []uuid.UUID
	for i := range 12 {
		stream := fmt.Sprintf("s%d", i%4)
		batch := recs(1+i%3, stream)
		mustAppend(t, s, stream, eventstore.Any(), batch...)
		for _, r := range batch {
			want = append(want, r.ID)
		}
	}
	for _, page := range []int{1, 3, 7, 1000} {
		all := readAllUntil(t, s, len(want), page)
		for i, e := range all {
			if e.ID != want[i] {
				t.Fatalf("page %d: global event %d is %s, want %s", page, i, e.ID, want[i])
			}
			if i > 0 && !all[i-1].Position.Less(e.Position) {
				t.Fatalf("page %d: positions not increasing at %d: %s then %s", page, i, all[i-1].Position, e.Position)
			}
		}
		last := all[len(all)-1].Position
		evs, err := s.ReadAll(ctxT(t), last, page)
		if err != nil || len(evs) != 0 {
			t.Fatalf("read all after the last event: %d events, %v", len(evs), err)
		}
	}
	// Resuming from the middle returns exactly the rest.
	all := readAllUntil(t, s, len(want), 1000)
	rest, err := s.ReadAll(ctxT(t), all[9].Position, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != len(want)-10 || rest[0].ID != want[10] {
		t.Fatalf("read all from event 10's position: %d events, want %d starting at %s", len(rest), len(want)-10, want[10])
	}
}

// hold starts a held append and makes sure it is committed before the store closes,
// even if the test fails first. The returned commit may be called more than once.
func hold(t *testing.T, h Holder, stream string, r eventstore.Record) (commit func() error) {
	t.Helper()
	c, err := h.HoldOpenAppend(ctxT(t), stream, r)
	if err != nil {
		t.Fatalf("hold open append to %s: %v", stream, err)
	}
	var once sync.Once
	var cerr error
	commit = func() error {
		once.Do(func() { cerr = c() })
		return cerr
	}
	t.Cleanup(func() { commit() })
	return commit
}

func holder(t *testing.T, s eventstore.Store) Holder {
	h, ok := s.(Holder)
	if !ok {
		t.Skipf("%T does not implement storetest.Holder", s)
	}
	return h
}

func testReadAllHeldTransaction(t *testing.T, s eventstore.Store) {
	h := holder(t, s)
	ctx := ctxT(t)
	before := rec("T", "before")
	mustAppend(t, s, "a", eventstore.Any(), before)
	seen := readAllUntil(t, s, 1, 10)
	cursor := seen[0].Position

	held := rec("T", "held")
	commit := hold(t, h, "held-stream", held)
	later := rec("T", "later")
	mustAppend(t, s, "b", eventstore.Any(), later)

	// The later event is committed, the held one is not: a reader must not move past the
	// held event's place, so it sees nothing yet.
	evs, err := s.ReadAll(ctx, cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.ID == later.ID {
			t.Fatalf("read all returned the later event at %s while an earlier append was still open", e.Position)
		}
		cursor = e.Position
	}
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	var got []uuid.UUID
	deadline := time.Now().Add(visibleTimeout)
	for len(got) < 2 && time.Now().Before(deadline) {
		evs, err := s.ReadAll(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.ID)
			cursor = e.Position
		}
		if len(evs) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(got) != 2 || got[0] != held.ID || got[1] != later.ID {
		t.Fatalf("after commit the reader saw %v, want [held %s, later %s]", got, held.ID, later.ID)
	}
}

func testReadAllConcurrentWriters(t *testing.T, s eventstore.Store) {
	const writers, each = 6, 15
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Append(ctx, fmt.Sprintf("w%d", w), eventstore.Any(), recs(1+i%2, "x")...); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	want := 0
	for i := range each {
		want += 1 + i%2
	}
	want *= writers

	// A reader follows the global order while the writers run, resuming each time from
	// the last position it saw.
	seen := map[uuid.UUID]bool{}
	from := eventstore.Start
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		deadline := time.Now().Add(visibleTimeout + 10*time.Second)
		for len(seen) < want && time.Now().Before(deadline) {
			evs, err := s.ReadAll(ctx, from, 7)
			if err != nil {
				errc <- err
				return
			}
			for _, e := range evs {
				if seen[e.ID] {
					errc <- fmt.Errorf("event %s returned twice", e.ID)
					return
				}
				if !from.Less(e.Position) {
					errc <- fmt.Errorf("event at %s not after cursor %s", e.Position, from)
					return
				}
				seen[e.ID] = true
				from = e.Position
			}
			if len(evs) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	wg.Wait()
	<-readerDone
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if len(seen) != want {
		t.Fatalf("concurrent reader saw %d of %d events", len(seen), want)
	}
	// And the reader's view equals a fresh read of the whole order.
	all := readAllUntil(t, s, want, 1000)
	for _, e := range all {
		if !seen[e.ID] {
			t.Fatalf("the concurrent reader skipped event %s at %s", e.ID, e.Position)
		}
	}
}

// ---- subscriptions ----

// collector gathers subscription batches; safe for concurrent use.
type collector struct {
	mu     sync.Mutex
	events []eventstore.RecordedEvent
	err    error
}

func (c *collector) handle(_ context.Context, batch []eventstore.RecordedEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(batch) == 0 {
		c.err = errors.New("subscription delivered an empty batch")
		return c.err
	}
	for _, e := range batch {
		if n := len(c.events); n > 0 && !c.events[n-1].Position.Less(e.Position) {
			c.err = fmt.Errorf("subscription delivered %s after %s", e.Position, c.events[n-1].Position)
			return c.err
		}
		c.events = append(c.events, e)
	}
	return nil
}

func (c *collector) ids() []uuid.UUID {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uuid.UUID, len(c.events))
	for i, e := range c.events {
		out[i] = e.ID
	}
	return out
}

func (c *collector) waitFor(t *testing.T, want []uuid.UUID) {
	t.Helper()
	deadline := time.Now().Add(visibleTimeout)
	for {
		got := c.ids()
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > len(want) {
			t.Fatalf("subscription delivered %d events, want %d", len(got), len(want))
		}
		if len(got) == len(want) {
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("subscription event %d is %s, want %s", i, got[i], want[i])
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription delivered %d of %d events after %v", len(got), len(want), visibleTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func idsOf(rs []eventstore.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// subscribe runs Subscribe in a goroutine. stop cancels it and returns its error;
// finished is closed when it has returned by itself or by stop.
func subscribe(t *testing.T, s eventstore.Store, from eventstore.Position, handle func(context.Context, []eventstore.RecordedEvent) error) (stop func() error, finished <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctxT(t))
	fin := make(chan struct{})
	var err error
	go func() {
		defer close(fin)
		err = s.Subscribe(ctx, from, handle)
	}()
	stop = func() error {
		cancel()
		select {
		case <-fin:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("subscription did not return within 10s of cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop, fin
}

func testSubscribeCatchUpThenLive(t *testing.T, s eventstore.Store) {
	var want []eventstore.Record
	for i := range 5 {
		b := recs(1+i%2, "old")
		mustAppend(t, s, fmt.Sprintf("s%d", i%2), eventstore.Any(), b...)
		want = append(want, b...)
	}
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.waitFor(t, idsOf(want))
	for i := range 6 {
		b := recs(1+i%3, "live")
		mustAppend(t, s, fmt.Sprintf("s%d", i%3), eventstore.Any(), b...)
		want = append(want, b...)
	}
	c.waitFor(t, idsOf(want))
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe after cancel returned %v, want context.Canceled", err)
	}
}

func testSubscribeResume(t *testing.T, s eventstore.Store) {
	all := recs(9, "r")
	for i, r := range all {
		mustAppend(t, s, fmt.Sprintf("s%d", i%3), eventstore.Any(), r)
	}
	// The first subscriber stops itself after 4 events, checkpointing the last it handled.
	errStop := errors.New("stop here")
	var checkpoint eventstore.Position
	handled := 0
	err := s.Subscribe(ctxT(t), eventstore.Start, func(_ context.Context, batch []eventstore.RecordedEvent) error {
		for _, e := range batch {
			if handled == 4 {
				return errStop
			}
			if e.ID != all[handled].ID {
				return fmt.Errorf("event %d is %s, want %s", handled, e.ID, all[handled].ID)
			}
			handled++
			checkpoint = e.Position
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("first subscription returned %v, want the handler's error", err)
	}
	// Resume from the checkpoint: exactly the rest, then live events.
	c := &collector{}
	stop, _ := subscribe(t, s, checkpoint, c.handle)
	c.waitFor(t, idsOf(all[4:]))
	more := rec("T", "after resume")
	mustAppend(t, s, "s0", eventstore.Any(), more)
	c.waitFor(t, append(idsOf(all[4:]), more.ID))
	stop()
}

func testSubscribeHeldTransaction(t *testing.T, s eventstore.Store) {
	h := holder(t, s)
	first := rec("T", "first")
	mustAppend(t, s, "a", eventstore.Any(), first)
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.waitFor(t, []uuid.UUID{first.ID})

	held := rec("T", "held")
	commit := hold(t, h, "held-stream", held)
	later := rec("T", "later")
	mustAppend(t, s, "b", eventstore.Any(), later)
	// Give the subscription several polls to (wrongly) deliver the later event.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := c.ids(); len(got) != 1 {
			t.Fatalf("subscription delivered %v while an earlier append was open", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	c.waitFor(t, []uuid.UUID{first.ID, held.ID, later.ID})
	stop()
}

func testSubscribeHandlerError(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), recs(3, "h")...)
	boom := errors.New("boom")
	calls := 0
	err := s.Subscribe(ctxT(t), eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("subscribe returned %v, want the handler's error", err)
	}
	if calls != 1 {
		t.Fatalf("handler called %d times after failing, want 1", calls)
	}

	// A live event reaching a failing handler stops the subscription too.
	stop, done := subscribe(t, s, eventstore.Start, func(_ context.Context, batch []eventstore.RecordedEvent) error {
		for _, e := range batch {
			if e.StreamVersion == 4 {
				return boom
			}
		}
		return nil
	})
	mustAppend(t, s, "s", eventstore.Exact(3), rec("T", "4"))
	select {
	case <-done:
		if err := stop(); !errors.Is(err, boom) {
			t.Fatalf("subscribe returned %v, want the handler's error", err)
		}
	case <-time.After(visibleTimeout):
		stop()
		t.Fatal("subscription did not stop on the handler's error")
	}
}

func testSubscribeCancel(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), rec("T", "1"))
	c := &collector{}
	stop, _ := subscribe(t, s, eventstore.Start, c.handle)
	c.idsOrWait(t)
	began := time.Now()
	err := stop()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe returned %v after cancel, want context.Canceled", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("subscribe took %v to return after cancel", d)
	}

	// An already-cancelled context returns at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Subscribe(ctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe with a cancelled context returned %v", err)
	}
}

// idsOrWait waits for the first delivered event and returns its id.
func (c *collector) idsOrWait(t *testing.T) uuid.UUID {
	t.Helper()
	deadline := time.Now().Add(visibleTimeout)
	for time.Now().Before(deadline) {
		if ids := c.ids(); len(ids) > 0 {
			return ids[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("subscription delivered nothing")
	return uuid.Nil
}

// ---- bad input ----

func testBadInput(t *testing.T, s eventstore.Store) {
	ok := rec("T", "ok")
	cases := []struct {
		name   string
		stream string
		exp    eventstore.ExpectedVersion
		rs     []eventstore.Record
		want   error
	}{
		{"empty stream name", "", eventstore.Any(), []eventstore.Record{ok}, eventstore.ErrInvalidAppend},
		{"no records", "s", eventstore.Any(), nil, eventstore.ErrInvalidAppend},
		{"nil id", "s", eventstore.Any(), []eventstore.Record{{Type: "T", Data: []byte("x")}}, eventstore.ErrInvalidAppend},
		{"nil id after a good one", "s", eventstore.Any(), []eventstore.Record{ok, {Type: "T"}}, eventstore.ErrInvalidAppend},
		{"empty type", "s", eventstore.Any(), []eventstore.Record{{ID: uuid.New(), Data: []byte("x")}}, eventstore.ErrInvalidAppend},
		{"repeated id", "s", eventstore.Any(), []eventstore.Record{ok, ok}, eventstore.ErrInvalidAppend},
		{"stream name with NUL", "s\x00x", eventstore.Any(), []eventstore.Record{ok}, eventstore.ErrInvalidAppend},
		{"stream name not UTF-8", "s\xff", eventstore.Any(), []eventstore.Record{ok}, eventstore.ErrInvalidAppend},
		{"stream name too long", strings.Repeat("s", eventstore.MaxNameLen+1), eventstore.Any(), []eventstore.Record{ok}, eventstore.ErrInvalidAppend},
		{"type not UTF-8", "s", eventstore.Any(), []eventstore.Record{{ID: uuid.New(), Type: "T\xfe"}}, eventstore.ErrInvalidAppend},
		{"type too long", "s", eventstore.Any(), []eventstore.Record{{ID: uuid.New(), Type: strings.Repeat("T", eventstore.MaxNameLen+1)}}, eventstore.ErrInvalidAppend},
		{"zero-value expected version", "s", eventstore.ExpectedVersion{}, []eventstore.Record{ok}, eventstore.ErrInvalidAppend},
		{"record over the limit", "s", eventstore.Any(), []eventstore.Record{ok, {ID: uuid.New(), Type: "Big", Data: make([]byte, eventstore.MaxRecordSize+1)}}, eventstore.ErrRecordTooLarge},
	}
	for _, c := range cases {
		_, err := s.Append(ctxT(t), c.stream, c.exp, c.rs...)
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: append returned %v, want %v", c.name, err, c.want)
		}
	}
	wantVersion(t, s, "s", 0)
	wantVersion(t, s, "", 0)
	// Nothing was stored and ok's id was not consumed.
	if r := mustAppend(t, s, "s", eventstore.NoStream(), ok); r.Duplicate || r.StreamVersion != 1 {
		t.Fatalf("append after rejected input: %+v", r)
	}
	if all := readAllUntil(t, s, 1, 10); all[0].ID != ok.ID {
		t.Fatalf("global order holds %s, want only %s", all[0].ID, ok.ID)
	}
	// Unusual but valid stream names round-trip.
	for _, name := range []string{"ws-ünïcödé", "with space", strings.Repeat("x", eventstore.MaxNameLen), "quote'\"\\"} {
		r := rec("T", "n")
		mustAppend(t, s, name, eventstore.NoStream(), r)
		evs := readStream(t, s, name)
		if len(evs) != 1 {
			t.Fatalf("stream %q: %d events", name, len(evs))
		}
		checkSame(t, evs[0], r, name, 1)
	}
}

func testRecordSizeLimit(t *testing.T, s eventstore.Store) {
	half := eventstore.MaxRecordSize / 2
	data := bytes.Repeat([]byte{'d'}, half)
	meta := bytes.Repeat([]byte{'m'}, eventstore.MaxRecordSize-half)
	atLimit := eventstore.Record{ID: uuid.New(), Type: "Big", Data: data, Metadata: meta}
	mustAppend(t, s, "s", eventstore.NoStream(), atLimit)
	over := eventstore.Record{ID: uuid.New(), Type: "Big", Data: data, Metadata: append(meta, 'x')}
	if _, err := s.Append(ctxT(t), "s", eventstore.Any(), over); !errors.Is(err, eventstore.ErrRecordTooLarge) {
		t.Fatalf("append over the limit: %v, want ErrRecordTooLarge", err)
	}
	evs := readStream(t, s, "s")
	if len(evs) != 1 {
		t.Fatalf("stream holds %d events, want 1", len(evs))
	}
	checkSame(t, evs[0], atLimit, "s", 1)
}

// ---- lifecycle ----

func testClosed(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), rec("T", "1"))
	c := &collector{}
	stop, done := subscribe(t, s, eventstore.Start, c.handle)
	c.idsOrWait(t)

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	select {
	case <-done:
		if err := stop(); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("running subscription returned %v on close, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("running subscription did not return within 10s of Close")
	}

	ctx := ctxT(t)
	checks := map[string]error{}
	_, checks["Append"] = s.Append(ctx, "s", eventstore.Any(), rec("T", "2"))
	_, checks["ReadStream"] = s.ReadStream(ctx, "s", 1, 10)
	_, checks["StreamVersion"] = s.StreamVersion(ctx, "s")
	_, checks["ReadAll"] = s.ReadAll(ctx, eventstore.Start, 10)
	checks["Subscribe"] = s.Subscribe(ctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !errors.Is(checks[n], eventstore.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", n, checks[n])
		}
	}
}
