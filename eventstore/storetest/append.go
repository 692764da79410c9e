package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

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
