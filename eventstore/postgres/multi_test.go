package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// A multi append hands the inline hook every record of every stream, with the versions
// and positions the store reads back; one that writes nothing (a wrong version, a retry)
// does not call it.
func TestInlineSeesEveryStreamOfAMultiAppend(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openInline(t, dsn, mirror(""))
	ctx := context.Background()
	a, b := "ws-"+uuid.NewString(), "ws-"+uuid.NewString()
	appends := []eventstore.StreamAppend{
		{Stream: a, Expected: eventstore.NoStream(), Records: []eventstore.Record{rec("E"), rec("E")}},
		{Stream: b, Expected: eventstore.NoStream(), Records: []eventstore.Record{rec("E")}},
	}
	if _, err := s.AppendMulti(ctx, appends); err != nil {
		t.Fatal(err)
	}
	if res, err := s.AppendMulti(ctx, appends); err != nil || !res[0].Duplicate || !res[1].Duplicate {
		t.Fatalf("retried multi append: %+v, %v", res, err)
	}
	wrong := rec("E")
	_, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: b, Expected: eventstore.Exact(1), Records: []eventstore.Record{rec("E")}},
		{Stream: a, Expected: eventstore.Exact(1), Records: []eventstore.Record{wrong}},
	})
	if !errors.Is(err, eventstore.ErrWrongVersion) {
		t.Fatalf("multi append at a wrong version: %v", err)
	}
	got := mirrored(t, dsn)
	n := 0
	for _, stream := range []string{a, b} {
		recs, err := s.ReadStream(ctx, stream, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range recs {
			n++
			m, ok := got[e.ID]
			if !e.Inline || !ok || m.Stream != e.Stream || m.StreamVersion != e.StreamVersion || m.Position != e.Position {
				t.Errorf("event %s@%d %s (inline %v): mirrored as %+v (present %v)", e.Stream, e.StreamVersion, e.Position, e.Inline, m, ok)
			}
		}
	}
	if n != 3 {
		t.Fatalf("the streams hold %d events, want 3", n)
	}
	if _, ok := got[wrong.ID]; ok {
		t.Fatal("a record of the failed multi append was mirrored")
	}
}

// A multi append whose read-model write fails for one stream's record fails as a
// whole and alone: no stream gets anything, no read-model row is written, and appends
// running beside it are stored.
func TestInlineFailureFailsTheMultiAppendAlone(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	s := openInline(t, dsn, mirror("Poison"))
	ctx := context.Background()
	a, b, c := "ws-"+uuid.NewString(), "ws-"+uuid.NewString(), "ws-"+uuid.NewString()
	good := rec("E")
	_, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: a, Expected: eventstore.NoStream(), Records: []eventstore.Record{good}},
		{Stream: b, Expected: eventstore.NoStream(), Records: []eventstore.Record{rec("Poison")}},
	})
	if err == nil {
		t.Fatal("multi append with a failing inline statement succeeded")
	}
	beside := rec("E")
	if _, err := s.Append(ctx, c, eventstore.NoStream(), beside); err != nil {
		t.Fatalf("append beside the failed multi append: %v", err)
	}
	for _, stream := range []string{a, b} {
		if recs, err := s.ReadStream(ctx, stream, 1, 10); err != nil || len(recs) != 0 {
			t.Fatalf("stream %s after a failed multi append: %d events, %v", stream, len(recs), err)
		}
	}
	got := mirrored(t, dsn)
	if _, ok := got[good.ID]; ok {
		t.Fatal("read-model row of a failed multi append")
	}
	if _, ok := got[beside.ID]; !ok {
		t.Fatal("the append beside it was not mirrored")
	}
	// The streams stay usable.
	if _, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
		{Stream: a, Expected: eventstore.NoStream(), Records: []eventstore.Record{good}},
		{Stream: b, Expected: eventstore.NoStream(), Records: []eventstore.Record{rec("E")}},
	}); err != nil {
		t.Fatalf("multi append after the failure: %v", err)
	}
}

// The store declares the capability; eventstore.Supports says so.
func TestSupportsMultiStreamAppend(t *testing.T) {
	s := openStore(t, testenv.PostgresDSN(t))
	if err := eventstore.Supports(s, eventstore.CapMultiStreamAppend); err != nil {
		t.Fatal(err)
	}
}
