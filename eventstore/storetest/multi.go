package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// multiAppender returns s as an eventstore.MultiAppender, or skips the test with the
// reason the store declares for lacking the capability.
func multiAppender(t *testing.T, s eventstore.Store) eventstore.MultiAppender {
	if err := eventstore.Supports(s, eventstore.CapMultiStreamAppend); err != nil {
		t.Skipf("skipped: %v", err)
	}
	return s.(eventstore.MultiAppender)
}

func mustMulti(t *testing.T, m eventstore.MultiAppender, appends ...eventstore.StreamAppend) []eventstore.AppendResult {
	t.Helper()
	res, err := m.AppendMulti(ctxT(t), appends)
	if err != nil {
		t.Fatalf("multi append to %d streams: %v", len(appends), err)
	}
	if len(res) != len(appends) {
		t.Fatalf("multi append to %d streams returned %d results", len(appends), len(res))
	}
	return res
}

// testMultiRoundTrip: every append lands at its stream's next versions, the results
// match what is read back, and in the global order the multi append's events come
// together, after what was appended before and before what is appended after, stream
// by stream in the order of the appends.
func testMultiRoundTrip(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	before := rec("T", "before")
	mustAppend(t, s, "m-old", eventstore.NoStream(), before)
	z, a, old := recs(2, "z"), recs(1, "a"), recs(3, "old")
	// The streams are not in name order: the global order follows the appends' order.
	res := mustMulti(t, m,
		eventstore.StreamAppend{Stream: "m-z", Expected: eventstore.NoStream(), Records: z},
		eventstore.StreamAppend{Stream: "m-old", Expected: eventstore.Exact(1), Records: old},
		eventstore.StreamAppend{Stream: "m-a", Expected: eventstore.Any(), Records: a},
	)
	after := rec("T", "after")
	mustAppend(t, s, "m-a", eventstore.Exact(1), after)
	for i, want := range []uint64{2, 4, 1} {
		if res[i].StreamVersion != want || res[i].Duplicate {
			t.Fatalf("result %d: %+v, want stream version %d", i, res[i], want)
		}
	}
	wantVersion(t, s, "m-z", 2)
	wantVersion(t, s, "m-old", 4)
	wantVersion(t, s, "m-a", 2)

	all := readAllUntil(t, s, 8, 3)
	wantOrder := []struct {
		r       eventstore.Record
		stream  string
		version uint64
	}{{before, "m-old", 1}, {z[0], "m-z", 1}, {z[1], "m-z", 2}, {old[0], "m-old", 2}, {old[1], "m-old", 3},
		{old[2], "m-old", 4}, {a[0], "m-a", 1}, {after, "m-a", 2}}
	for i, w := range wantOrder {
		checkSame(t, all[i], w.r, w.stream, w.version)
	}
	for i, k := range []int{2, 5, 6} {
		if all[k].Position != res[i].Position {
			t.Fatalf("result %d at %s, its last event read at %s", i, res[i].Position, all[k].Position)
		}
	}
}

// testMultiWrongVersionWritesNothing: one expectation that does not hold fails the whole
// multi append with that stream's *WrongVersionError, and no stream gets anything.
func testMultiWrongVersionWritesNothing(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	mustAppend(t, s, "w-a", eventstore.NoStream(), rec("T", "a1"))
	mustAppend(t, s, "w-b", eventstore.NoStream(), recs(2, "b")...)
	cases := []struct {
		name    string
		appends []eventstore.StreamAppend
		stream  string
		actual  uint64
	}{
		{"last wrong", []eventstore.StreamAppend{
			{Stream: "w-a", Expected: eventstore.Exact(1), Records: recs(1, "x")},
			{Stream: "w-new", Expected: eventstore.NoStream(), Records: recs(2, "x")},
			{Stream: "w-b", Expected: eventstore.Exact(1), Records: recs(1, "x")},
		}, "w-b", 2},
		{"first wrong", []eventstore.StreamAppend{
			{Stream: "w-b", Expected: eventstore.NoStream(), Records: recs(1, "y")},
			{Stream: "w-a", Expected: eventstore.Any(), Records: recs(1, "y")},
		}, "w-b", 2},
		{"new stream exists", []eventstore.StreamAppend{
			{Stream: "w-new", Expected: eventstore.Any(), Records: recs(1, "z")},
			{Stream: "w-a", Expected: eventstore.NoStream(), Records: recs(1, "z")},
		}, "w-a", 1},
	}
	for _, c := range cases {
		_, err := m.AppendMulti(ctxT(t), c.appends)
		if err == nil {
			t.Fatalf("%s: multi append succeeded", c.name)
		}
		wantWrongVersion(t, err, c.stream, c.actual)
		wantVersion(t, s, "w-a", 1)
		wantVersion(t, s, "w-b", 2)
		wantVersion(t, s, "w-new", 0)
	}
	// Nothing of the failed appends reaches the global order either.
	mustAppend(t, s, "w-a", eventstore.Exact(1), rec("T", "a2"))
	all := readAllUntil(t, s, 4, 10)
	if last := all[3]; last.Stream != "w-a" || last.StreamVersion != 2 {
		t.Fatalf("global order ends with %s@%d, want w-a@2", last.Stream, last.StreamVersion)
	}
}

// testMultiConcurrentWriterFailsAll: while a multi append waits for a stream that
// another writer holds, that writer commits and so breaks the multi append's expectation
// on it: the multi append fails, and the other stream gets nothing either.
func testMultiConcurrentWriterFailsAll(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	h := holder(t, s)
	mustAppend(t, s, "c-a", eventstore.NoStream(), rec("T", "a1"))
	mustAppend(t, s, "c-b", eventstore.NoStream(), rec("T", "b1"))
	commit := hold(t, h, "c-b", rec("T", "b2-concurrent"))
	done := make(chan error, 1)
	go func() {
		_, err := m.AppendMulti(ctxT(t), []eventstore.StreamAppend{
			{Stream: "c-a", Expected: eventstore.Exact(1), Records: recs(1, "a")},
			{Stream: "c-b", Expected: eventstore.Exact(1), Records: recs(1, "b")},
		})
		done <- err
	}()
	if err := commit(); err != nil {
		t.Fatalf("commit held append: %v", err)
	}
	wantWrongVersion(t, <-done, "c-b", 2)
	wantVersion(t, s, "c-a", 1)
	wantVersion(t, s, "c-b", 2)
}

// testMultiRacingWritersAllOrNothing races multi appends to two streams, each expecting
// the versions it read, with single appends to one of them: every multi append is
// stored in both streams or in neither, and the streams stay gap-free.
func testMultiRacingWritersAllOrNothing(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	const multis, singles = 3, 2
	const rounds = 15
	var wg sync.WaitGroup
	errc := make(chan error, multis+singles)
	var mu sync.Mutex
	tried := map[string][2]uuid.UUID{} // multi attempt → its records in r-a and r-b
	for w := range multis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := ctxT(t)
			for i := range rounds {
				va, err := s.StreamVersion(ctx, "r-a")
				if err != nil {
					errc <- err
					return
				}
				vb, err := s.StreamVersion(ctx, "r-b")
				if err != nil {
					errc <- err
					return
				}
				ra, rb := rec("M", fmt.Sprintf("m%d-%d-a", w, i)), rec("M", fmt.Sprintf("m%d-%d-b", w, i))
				mu.Lock()
				tried[fmt.Sprintf("%d-%d", w, i)] = [2]uuid.UUID{ra.ID, rb.ID}
				mu.Unlock()
				_, err = m.AppendMulti(ctx, []eventstore.StreamAppend{
					{Stream: "r-a", Expected: eventstore.Exact(va), Records: []eventstore.Record{ra}},
					{Stream: "r-b", Expected: eventstore.Exact(vb), Records: []eventstore.Record{rb}},
				})
				if err != nil && !errors.Is(err, eventstore.ErrWrongVersion) {
					errc <- fmt.Errorf("multi %d round %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	for w := range singles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if _, err := s.Append(ctxT(t), "r-b", eventstore.Any(), rec("S", fmt.Sprintf("s%d-%d", w, i))); err != nil {
					errc <- fmt.Errorf("single %d round %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	checkAllOrNothing(t, s, tried)
}

// checkAllOrNothing checks that each multi append tried (its records in r-a and r-b)
// was stored in both streams, together and in order, or in neither; that at least one
// was stored; and that the streams are gap-free and fully readable in global order.
func checkAllOrNothing(t *testing.T, s eventstore.Store, tried map[string][2]uuid.UUID) {
	t.Helper()
	stored := map[uuid.UUID]eventstore.RecordedEvent{}
	for _, stream := range []string{"r-a", "r-b"} {
		for i, e := range readStream(t, s, stream) {
			if e.StreamVersion != uint64(i+1) {
				t.Fatalf("%s: event %d at version %d", stream, i, e.StreamVersion)
			}
			stored[e.ID] = e
		}
	}
	ok := 0
	for k, ids := range tried {
		ea, inA := stored[ids[0]]
		eb, inB := stored[ids[1]]
		if inA != inB {
			t.Fatalf("multi append %s stored in r-a: %v, in r-b: %v: not all or nothing", k, inA, inB)
		}
		if inA {
			ok++
			if !ea.Position.Less(eb.Position) || !adjacent(stored, ea, eb) {
				t.Fatalf("multi append %s: its events at %s and %s are not together, in order", k, ea.Position, eb.Position)
			}
		}
	}
	if ok == 0 {
		t.Fatalf("none of %d multi appends was stored", len(tried))
	}
	readAllUntil(t, s, len(stored), 50)
}

// adjacent reports whether no stored event lies strictly between a and b in the global order.
func adjacent(stored map[uuid.UUID]eventstore.RecordedEvent, a, b eventstore.RecordedEvent) bool {
	for _, e := range stored {
		if a.Position.Less(e.Position) && e.Position.Less(b.Position) {
			return false
		}
	}
	return true
}

// testMultiIdempotency: a retried multi append returns the original results with
// Duplicate set (also after the streams moved on); one part of it retried alone is a
// duplicate as a single append; any other reuse of stored ids writes nothing.
func testMultiIdempotency(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	appends := []eventstore.StreamAppend{
		{Stream: "i-a", Expected: eventstore.NoStream(), Records: recs(2, "a")},
		{Stream: "i-b", Expected: eventstore.NoStream(), Records: recs(1, "b")},
	}
	orig := mustMulti(t, m, appends...)
	check := func(what string, got []eventstore.AppendResult) {
		t.Helper()
		for i := range orig {
			if !got[i].Duplicate || got[i].StreamVersion != orig[i].StreamVersion || got[i].Position != orig[i].Position {
				t.Fatalf("%s, append %d: %+v, want the original %+v with Duplicate", what, i, got[i], orig[i])
			}
		}
	}
	check("retry", mustMulti(t, m, appends...))
	mustAppend(t, s, "i-a", eventstore.Exact(2), rec("T", "a3"))
	mustAppend(t, s, "i-b", eventstore.Any(), rec("T", "b2"))
	check("late retry", mustMulti(t, m, appends...))
	part := mustAppend(t, s, "i-b", eventstore.Any(), appends[1].Records...)
	if !part.Duplicate || part.Position != orig[1].Position {
		t.Fatalf("one part retried by Append: %+v, want the original %+v with Duplicate", part, orig[1])
	}

	single := recs(1, "single")
	mustAppend(t, s, "i-c", eventstore.NoStream(), single...)
	wantInvalid := func(what string, appends ...eventstore.StreamAppend) {
		t.Helper()
		res, err := m.AppendMulti(ctxT(t), appends)
		if !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Fatalf("%s: %+v, %v, want ErrInvalidAppend", what, res, err)
		}
	}
	fresh := eventstore.StreamAppend{Stream: "i-new", Expected: eventstore.Any(), Records: recs(1, "fresh")}
	wantInvalid("one part of it with a fresh append", appends[0], fresh)
	wantInvalid("fresh append then one part of it", fresh, appends[1])
	wantInvalid("parts of different calls", appends[0], eventstore.StreamAppend{Stream: "i-c", Expected: eventstore.Any(), Records: single})
	wantInvalid("its ids to other streams", eventstore.StreamAppend{Stream: "i-x", Expected: eventstore.Any(), Records: appends[0].Records},
		eventstore.StreamAppend{Stream: "i-y", Expected: eventstore.Any(), Records: appends[1].Records})
	wantInvalid("one id more", eventstore.StreamAppend{Stream: "i-a", Expected: eventstore.Any(),
		Records: append(slices.Clone(appends[0].Records), rec("T", "more"))}, appends[1])
	wantVersion(t, s, "i-a", 3)
	wantVersion(t, s, "i-b", 2)
	wantVersion(t, s, "i-new", 0)
	wantVersion(t, s, "i-x", 0)
	// The fresh append was never written: alone, it appends.
	if r := mustMulti(t, m, fresh); r[0].Duplicate || r[0].StreamVersion != 1 {
		t.Fatalf("fresh append: %+v", r[0])
	}
}

// testMultiBadInput: input Append would refuse, a stream twice, a record id in two
// appends, no appends: ErrInvalidAppend (or ErrRecordTooLarge), nothing written.
func testMultiBadInput(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	r := rec("T", "shared-id")
	ok := eventstore.StreamAppend{Stream: "bad-ok", Expected: eventstore.Any(), Records: recs(1, "ok")}
	cases := map[string][]eventstore.StreamAppend{
		"no appends":       nil,
		"stream twice":     {ok, {Stream: "bad-ok", Expected: eventstore.Any(), Records: recs(1, "again")}},
		"id in two":        {{Stream: "bad-1", Expected: eventstore.Any(), Records: []eventstore.Record{r}}, {Stream: "bad-2", Expected: eventstore.Any(), Records: []eventstore.Record{r}}},
		"empty stream":     {ok, {Stream: "", Expected: eventstore.Any(), Records: recs(1, "x")}},
		"no records":       {ok, {Stream: "bad-3", Expected: eventstore.Any()}},
		"no expectation":   {ok, {Stream: "bad-3", Records: recs(1, "x")}},
		"nil record id":    {ok, {Stream: "bad-3", Expected: eventstore.Any(), Records: []eventstore.Record{{Type: "T"}}}},
		"record too large": {ok, {Stream: "bad-3", Expected: eventstore.Any(), Records: []eventstore.Record{{ID: uuid.New(), Type: "T", Data: make([]byte, eventstore.MaxRecordSize+1)}}}},
	}
	for name, appends := range cases {
		_, err := m.AppendMulti(ctxT(t), appends)
		if !errors.Is(err, eventstore.ErrInvalidAppend) && !errors.Is(err, eventstore.ErrRecordTooLarge) {
			t.Fatalf("%s: %v, want ErrInvalidAppend or ErrRecordTooLarge", name, err)
		}
	}
	for _, stream := range []string{"bad-ok", "bad-1", "bad-2", "bad-3"} {
		wantVersion(t, s, stream, 0)
	}
}

// testMultiWithBatchesNoDeadlock runs multi appends, batches and single appends over the
// same streams, in opposite orders, at once: none fails and every stream is gap-free.
func testMultiWithBatchesNoDeadlock(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	ba, _ := s.(eventstore.BatchAppender)
	names := []string{"n-0", "n-1", "n-2", "n-3"}
	const workers, rounds = 4, 6
	var wg sync.WaitGroup
	errc := make(chan error, 3*workers)
	for w := range workers {
		order := slices.Clone(names)
		if w%2 == 1 {
			slices.Reverse(order)
		}
		appends := func(r int) []eventstore.StreamAppend {
			out := make([]eventstore.StreamAppend, len(order))
			for i, n := range order {
				out[i] = eventstore.StreamAppend{Stream: n, Expected: eventstore.Any(), Records: recs(1, fmt.Sprintf("w%d-r%d", w, r))}
			}
			return out
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if _, err := m.AppendMulti(ctxT(t), appends(r)); err != nil {
					errc <- fmt.Errorf("multi %d round %d: %w", w, r, err)
					return
				}
			}
		}()
		if ba != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					for _, res := range ba.AppendBatch(ctxT(t), appends(r)) {
						if res.Err != nil {
							errc <- fmt.Errorf("batch %d round %d: %w", w, r, res.Err)
							return
						}
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			appendSingles(ctxT(t), s, order, w, rounds, errc)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	total := 0
	for _, n := range names {
		evs := readStream(t, s, n)
		for i, e := range evs {
			if e.StreamVersion != uint64(i+1) {
				t.Fatalf("stream %s: event %d has version %d", n, i, e.StreamVersion)
			}
		}
		total += len(evs)
	}
	if err := checkStreamOrder("read all", readAllUntil(t, s, total, 100)); err != nil {
		t.Fatal(err)
	}
}

func testMultiClosed(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := m.AppendMulti(ctxT(t), []eventstore.StreamAppend{
		{Stream: "a", Expected: eventstore.Any(), Records: recs(1, "a")},
		{Stream: "b", Expected: eventstore.Any(), Records: recs(1, "b")},
	})
	if !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("multi append after Close: %v, want ErrClosed", err)
	}
}

// testMultiLargeRecords: a multi append may carry several records of the largest size
// in each stream (a share's move split into parts, PROTOCOL.md §8): all of them stored,
// at their streams' next versions, and read back intact.
func testMultiLargeRecords(t *testing.T, s eventstore.Store) {
	m := multiAppender(t, s)
	big := func(stream string, i int) eventstore.Record {
		data := bytes.Repeat([]byte{byte('a' + i)}, eventstore.MaxRecordSize)
		copy(data, stream)
		return eventstore.Record{ID: uuid.New(), Type: "Big", Data: data}
	}
	appends := []eventstore.StreamAppend{{Stream: "big-w", Expected: eventstore.NoStream()}, {Stream: "big-s", Expected: eventstore.NoStream()}}
	for i := range appends {
		for j := range 3 {
			appends[i].Records = append(appends[i].Records, big(appends[i].Stream, j))
		}
	}
	res := mustMulti(t, m, appends...)
	for i, a := range appends {
		if res[i].StreamVersion != 3 {
			t.Fatalf("%s: result %+v, want stream version 3", a.Stream, res[i])
		}
		got, err := s.ReadStream(ctxT(t), a.Stream, 1, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("%s: read %d records, %v", a.Stream, len(got), err)
		}
		for j, r := range got {
			if r.ID != a.Records[j].ID || r.StreamVersion != uint64(j+1) || !bytes.Equal(r.Data, a.Records[j].Data) {
				t.Fatalf("%s@%d: record %s of %d bytes, want %s of %d", a.Stream, j+1, r.ID, len(r.Data), a.Records[j].ID, len(a.Records[j].Data))
			}
		}
	}
}
