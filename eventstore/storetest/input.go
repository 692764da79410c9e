package storetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

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
