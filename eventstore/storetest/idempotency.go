package storetest

import (
	"errors"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
)

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
	wantVersion(t, s, "s", 2)

	// fresh was never written: it still appends.
	if r := mustAppend(t, s, "s", eventstore.Exact(2), fresh); r.Duplicate || r.StreamVersion != 3 {
		t.Fatalf("append of fresh record: %+v", r)
	}
	readAllUntil(t, s, 3, 10)
}

// testIdempotencyAcrossStreams: a record id already stored in one stream is refused in
// another (eventstore.CapGlobalEventIDs); skipped, with the store's reason, for stores
// that declare ids unique per stream only.
func testIdempotencyAcrossStreams(t *testing.T, s eventstore.Store) {
	if err := eventstore.Supports(s, eventstore.CapGlobalEventIDs); err != nil {
		t.Skipf("skipped: %v", err)
	}
	batch := recs(2, "b")
	mustAppend(t, s, "s", eventstore.NoStream(), batch...)
	for _, c := range []struct {
		what string
		exp  eventstore.ExpectedVersion
		rs   []eventstore.Record
	}{
		{"same ids, other stream", eventstore.Any(), batch},
		{"one id, other stream", eventstore.NoStream(), batch[:1]},
	} {
		res, err := s.Append(ctxT(t), "other", c.exp, c.rs...)
		if err == nil {
			t.Fatalf("%s: append succeeded with %+v, want an error", c.what, res)
		}
		if !errors.Is(err, eventstore.ErrInvalidAppend) && !errors.Is(err, eventstore.ErrWrongVersion) {
			t.Fatalf("%s: %v, want ErrInvalidAppend or ErrWrongVersion", c.what, err)
		}
	}
	wantVersion(t, s, "s", 2)
	wantVersion(t, s, "other", 0)
}
