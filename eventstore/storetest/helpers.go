package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

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
