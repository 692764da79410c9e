package postgres

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// TestScanEventsBinary checks that the binary decoding of event rows gives exactly what
// pgx's generic scan gives for the same rows (and for the text format, which takes the
// generic path): small and large values across several arena blocks, empty metadata,
// the inline flag, interned names.
func TestScanEventsBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{DSN: testenv.PostgresDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 40 {
		var recs []eventstore.Record
		for j := range 10 {
			size := 700 + 97*j
			if j == 3 {
				size = 40 << 10 // its own allocation
			}
			r := eventstore.Record{ID: uuid.New(), Type: fmt.Sprintf("Type%d", j%3), Data: bytes.Repeat([]byte{byte(i + j + 1)}, size)}
			if j%2 == 0 {
				r.Metadata = []byte(fmt.Sprintf(`{"n":%d}`, i*10+j))
			}
			recs = append(recs, r)
		}
		if _, err := s.Append(ctx, fmt.Sprintf("stream-%d", i%4), eventstore.Any(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, `UPDATE es_events SET inline = true WHERE global_pos % 3 = 0`); err != nil {
		t.Fatal(err)
	}
	read := func(scan func(pgx.Rows) ([]eventstore.RecordedEvent, error), binary bool, opts ...any) []eventstore.RecordedEvent {
		t.Helper()
		// Every row, whatever the horizon (other sessions on the server may hold it back).
		rows, err := s.pool.Query(ctx, `SELECT global_pos, tx_id, stream_id, stream_pos, event_id, event_type, data,
			metadata, recorded_at, inline FROM es_events ORDER BY global_pos`, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := binaryEventRows(rows.FieldDescriptions()); got != binary {
			rows.Close()
			t.Fatalf("binary rows: %v, want %v (%+v)", got, binary, rows.FieldDescriptions())
		}
		evs, err := scan(rows)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	fast := read(scanEvents, true)
	generic := read(scanEventsGeneric, true)
	text := read(scanEvents, false, pgx.QueryResultFormats{pgx.TextFormatCode})
	if len(fast) != 400 {
		t.Fatalf("read %d events, want 400", len(fast))
	}
	inline, noMeta := 0, 0
	for i := range fast {
		for name, other := range map[string][]eventstore.RecordedEvent{"generic": generic, "text": text} {
			if !reflect.DeepEqual(fast[i], other[i]) {
				t.Fatalf("event %d: binary decoding\n%+v\n%s scan\n%+v", i, fast[i], name, other[i])
			}
		}
		if fast[i].RecordedAt.Location() != time.Local {
			t.Fatalf("event %d: recorded_at in %v, want time.Local as pgx gives", i, fast[i].RecordedAt.Location())
		}
		if len(fast[i].Data) != cap(fast[i].Data) || len(fast[i].Metadata) != cap(fast[i].Metadata) {
			t.Fatalf("event %d: a value's capacity reaches into the next one", i)
		}
		if fast[i].Inline {
			inline++
		}
		if fast[i].Metadata == nil {
			noMeta++
		}
	}
	if inline == 0 || noMeta == 0 {
		t.Fatalf("the history lacks inline events (%d) or events without metadata (%d)", inline, noMeta)
	}
}

func TestTimestamptzInfinity(t *testing.T) {
	for _, v := range []int64{1<<63 - 1, -1 << 63} {
		if _, err := timestamptz(v); err == nil {
			t.Errorf("timestamptz(%d) = nil error, want one", v)
		}
	}
	if got, err := timestamptz(-1); err != nil || !got.Equal(time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)) {
		t.Errorf("timestamptz(-1) = %v, %v", got, err)
	}
}

// A page of one small event takes a small block, not a full one (a follower of the live
// tail reads such pages all the time); larger pages grow the blocks to arenaBlock; every
// value is a copy that appending to cannot extend into the next.
func TestByteArenaBlocks(t *testing.T) {
	var a byteArena
	first := a.copy(bytes.Repeat([]byte{1}, 900))
	if c := cap(a.block); c > 4<<10 {
		t.Errorf("the block for one 900-byte value holds %d bytes, want at most 4 KiB", c)
	}
	if cap(first) != len(first) {
		t.Errorf("value capacity %d, length %d: an append to it could overwrite the next", cap(first), len(first))
	}
	var got [][]byte
	blocks := 0
	for i := range 400 {
		v := a.copy(bytes.Repeat([]byte{byte(i)}, 1000))
		got = append(got, v)
		if len(a.block) == len(v) { // v started a new block
			blocks++
		}
	}
	last := cap(a.block)
	if last != arenaBlock {
		t.Errorf("after 400 KB of values the blocks hold %d bytes, want %d", last, arenaBlock)
	}
	if blocks > 14 {
		t.Errorf("400 KB of 1 KB values took %d blocks, want at most 14", blocks)
	}
	for i, v := range got {
		if !bytes.Equal(v, bytes.Repeat([]byte{byte(i)}, 1000)) {
			t.Fatalf("value %d changed", i)
		}
	}
	if big := a.copy(make([]byte, arenaBlock/2)); cap(a.block) != last || len(big) != arenaBlock/2 {
		t.Errorf("a value over a quarter block went into the shared block")
	}
}
