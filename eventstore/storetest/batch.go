package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
)

func batcher(t *testing.T, s eventstore.Store) eventstore.BatchAppender {
	b, ok := s.(eventstore.BatchAppender)
	if !ok {
		t.Skipf("%T does not implement eventstore.BatchAppender", s)
	}
	return b
}

func testBatchMixedOutcomes(t *testing.T, s eventstore.Store) {
	ba := batcher(t, s)
	mustAppend(t, s, "b", eventstore.NoStream(), rec("T", "b1"))
	d := recs(2, "d")
	origD := mustAppend(t, s, "d", eventstore.NoStream(), d...)
	x := rec("T", "x")
	mustAppend(t, s, "x", eventstore.NoStream(), x)

	a := recs(2, "a")
	c := rec("T", "c")
	batch := []eventstore.StreamAppend{
		{Stream: "a", Expected: eventstore.NoStream(), Records: a},
		{Stream: "b", Expected: eventstore.Exact(5), Records: []eventstore.Record{rec("T", "b-wrong")}},
		{Stream: "c", Expected: eventstore.Any(), Records: []eventstore.Record{c}},
		{Stream: "d", Expected: eventstore.NoStream(), Records: d},
		{Stream: "e", Expected: eventstore.Any(), Records: []eventstore.Record{x}},
		{Stream: "", Expected: eventstore.Any(), Records: []eventstore.Record{rec("T", "nameless")}},
		{Stream: "a", Expected: eventstore.Any(), Records: []eventstore.Record{rec("T", "a-again")}},
	}
	res := ba.AppendBatch(ctxT(t), batch)
	if len(res) != len(batch) {
		t.Fatalf("AppendBatch returned %d results for %d appends", len(res), len(batch))
	}
	if res[0].Err != nil || res[0].Result.StreamVersion != 2 || res[0].Result.Duplicate {
		t.Fatalf("append 0 (new stream): %+v", res[0])
	}
	wantWrongVersion(t, res[1].Err, "b", 1)
	if res[2].Err != nil || res[2].Result.StreamVersion != 1 {
		t.Fatalf("append 2 (any): %+v", res[2])
	}
	if res[3].Err != nil || !res[3].Result.Duplicate || res[3].Result.StreamVersion != origD.StreamVersion || res[3].Result.Position != origD.Position {
		t.Fatalf("append 3 (retry): %+v, want the original %+v with Duplicate", res[3], origD)
	}
	for _, i := range []int{4, 5, 6} {
		if !errors.Is(res[i].Err, eventstore.ErrInvalidAppend) {
			t.Fatalf("append %d: %+v, want ErrInvalidAppend", i, res[i])
		}
	}
	wantVersion(t, s, "a", 2)
	wantVersion(t, s, "b", 1)
	wantVersion(t, s, "c", 1)
	wantVersion(t, s, "d", 2)
	wantVersion(t, s, "e", 0)
	wantVersion(t, s, "", 0)

	all := readAllUntil(t, s, 7, 100)
	got := map[string][]eventstore.RecordedEvent{}
	for _, e := range all {
		got[e.Stream] = append(got[e.Stream], e)
	}
	checkSame(t, got["a"][0], a[0], "a", 1)
	checkSame(t, got["a"][1], a[1], "a", 2)
	checkSame(t, got["c"][0], c, "c", 1)
	if got["a"][1].Position != res[0].Result.Position || got["c"][0].Position != res[2].Result.Position {
		t.Fatalf("read positions %s, %s differ from batch results %s, %s",
			got["a"][1].Position, got["c"][0].Position, res[0].Result.Position, res[2].Result.Position)
	}
	if !got["x"][0].Position.Less(got["a"][0].Position) {
		t.Fatalf("batch events at %s ordered before the earlier append at %s", got["a"][0].Position, got["x"][0].Position)
	}
}

func testBatchRetryIsDuplicate(t *testing.T, s eventstore.Store) {
	ba := batcher(t, s)
	if res := ba.AppendBatch(ctxT(t), nil); len(res) != 0 {
		t.Fatalf("empty batch: %d results", len(res))
	}
	batch := []eventstore.StreamAppend{
		{Stream: "p", Expected: eventstore.NoStream(), Records: recs(2, "p")},
		{Stream: "q", Expected: eventstore.NoStream(), Records: recs(1, "q")},
	}
	first := ba.AppendBatch(ctxT(t), batch)
	again := ba.AppendBatch(ctxT(t), batch)
	for i := range batch {
		if first[i].Err != nil || first[i].Result.Duplicate {
			t.Fatalf("first batch, append %d: %+v", i, first[i])
		}
		if again[i].Err != nil || !again[i].Result.Duplicate || again[i].Result.StreamVersion != first[i].Result.StreamVersion ||
			again[i].Result.Position != first[i].Result.Position {
			t.Fatalf("retried batch, append %d: %+v, want %+v with Duplicate", i, again[i], first[i])
		}
	}
	wantVersion(t, s, "p", 2)
	wantVersion(t, s, "q", 1)
}

// testBatchConcurrentNoDeadlock runs batches over the same streams in opposite orders
// at once: none may fail (a deadlock would), and every stream stays gap-free.
func testBatchConcurrentNoDeadlock(t *testing.T, s eventstore.Store) {
	ba := batcher(t, s)
	const workers, rounds, streams = 4, 8, 6
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("shared-%d", i)
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := slices.Clone(names)
			if w%2 == 1 {
				slices.Reverse(order)
			}
			for r := range rounds {
				batch := make([]eventstore.StreamAppend, len(order))
				for i, n := range order {
					batch[i] = eventstore.StreamAppend{Stream: n, Expected: eventstore.Any(), Records: recs(1, fmt.Sprintf("w%d-r%d", w, r))}
				}
				for i, res := range ba.AppendBatch(ctxT(t), batch) {
					if res.Err != nil {
						errc <- fmt.Errorf("worker %d round %d append to %s: %w", w, r, batch[i].Stream, res.Err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for _, n := range names {
		evs := readStream(t, s, n)
		if len(evs) != workers*rounds {
			t.Fatalf("stream %s holds %d events, want %d", n, len(evs), workers*rounds)
		}
		for i, e := range evs {
			if e.StreamVersion != uint64(i+1) {
				t.Fatalf("stream %s: event %d has version %d", n, i, e.StreamVersion)
			}
		}
	}
	readAllUntil(t, s, workers*rounds*streams, 1000)
}

func testBatchClosed(t *testing.T, s eventstore.Store) {
	ba := batcher(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	res := ba.AppendBatch(ctxT(t), []eventstore.StreamAppend{
		{Stream: "a", Expected: eventstore.Any(), Records: recs(1, "a")},
		{Stream: "b", Expected: eventstore.Any(), Records: recs(1, "b")},
	})
	for i, r := range res {
		if !errors.Is(r.Err, eventstore.ErrClosed) {
			t.Fatalf("batch append %d after Close: %+v, want ErrClosed", i, r)
		}
	}
}
