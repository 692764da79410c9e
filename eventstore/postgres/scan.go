package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stacksync-es/syncservice/eventstore"
)

// eventColumns are the types of the columns every event read returns, in order
// (global_pos, tx_id, stream_id, stream_pos, event_id, event_type, data, metadata,
// recorded_at, inline).
var eventColumns = [...]uint32{pgtype.Int8OID, pgtype.XID8OID, pgtype.TextOID, pgtype.Int8OID, pgtype.UUIDOID,
	pgtype.TextOID, pgtype.ByteaOID, pgtype.ByteaOID, pgtype.TimestamptzOID, pgtype.BoolOID}

// scanEvents reads event rows (the columns of readAllSQL).
//
// When the rows come in the binary format (pgx asks for it for every one of these
// types but text), it decodes each row's raw values itself, as pgx's scan plans would:
// the generic scan and its garbage were most of the Go cost of reading the store in a
// rebuild (docs/benchmarks.md). The byte values of a page are copied into a few shared
// blocks instead of one allocation each, and the page's stream names and event types
// are interned (a page holds few distinct ones). A value in a block keeps the block
// (at most 64 KiB) alive as long as it is held. Any other format takes pgx's generic
// scan.
func scanEvents(rows pgx.Rows) ([]eventstore.RecordedEvent, error) {
	if !binaryEventRows(rows.FieldDescriptions()) {
		return scanEventsGeneric(rows)
	}
	defer rows.Close()
	var (
		out   []eventstore.RecordedEvent
		arena byteArena
		names = map[string]string{}
	)
	intern := func(b []byte) string {
		if s, ok := names[string(b)]; ok {
			return s
		}
		s := string(b)
		names[s] = s
		return s
	}
	for rows.Next() {
		ev, err := decodeEventRow(rows.RawValues(), &arena, intern)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// binaryEventRows reports whether fields are the event columns, all in the binary
// format but for the text ones (pgx asks for text as text: the same bytes either way).
func binaryEventRows(fields []pgconn.FieldDescription) bool {
	if len(fields) != len(eventColumns) {
		return false
	}
	for i, f := range fields {
		if f.DataTypeOID != eventColumns[i] || (f.Format != pgx.BinaryFormatCode && f.DataTypeOID != pgtype.TextOID) {
			return false
		}
	}
	return true
}

// errEventRow is a raw event row that does not have the shape of its column types.
var errEventRow = errors.New("malformed event row")

// decodeEventRow decodes one row of binary event columns; its byte values are copied
// into arena, its strings taken from intern.
func decodeEventRow(v [][]byte, arena *byteArena, intern func([]byte) string) (eventstore.RecordedEvent, error) {
	for _, i := range [...]int{0, 1, 3, 8} {
		if len(v[i]) != 8 {
			return eventstore.RecordedEvent{}, fmt.Errorf("%w: column %d has %d bytes", errEventRow, i, len(v[i]))
		}
	}
	if len(v[4]) != 16 || len(v[9]) != 1 || v[2] == nil || v[5] == nil || v[6] == nil || v[7] == nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("%w: bad event id, inline flag or NULL column", errEventRow)
	}
	at, err := timestamptz(int64(binary.BigEndian.Uint64(v[8])))
	if err != nil {
		return eventstore.RecordedEvent{}, err
	}
	return eventstore.RecordedEvent{
		ID:            uuid.UUID(v[4]),
		Stream:        intern(v[2]),
		StreamVersion: binary.BigEndian.Uint64(v[3]),
		Type:          intern(v[5]),
		Data:          arena.copy(v[6]),
		Metadata:      arena.copy(v[7]),
		Position:      eventstore.Position{Commit: binary.BigEndian.Uint64(v[1]), Prepare: binary.BigEndian.Uint64(v[0])},
		RecordedAt:    at,
		Inline:        v[9][0] != 0,
	}, nil
}

// pgEpochMicros is 2000-01-01 00:00 UTC, PostgreSQL's epoch, in microseconds after the Unix epoch.
const pgEpochMicros = 946_684_800 * 1_000_000

// timestamptz converts a binary timestamptz (microseconds after 2000-01-01 UTC) as pgx
// does for a time.Time: in time.Local; infinities cannot be a time.Time.
func timestamptz(microsSinceY2K int64) (time.Time, error) {
	if microsSinceY2K == 1<<63-1 || microsSinceY2K == -1<<63 {
		return time.Time{}, fmt.Errorf("%w: recorded_at is infinite", errEventRow)
	}
	return time.Unix(pgEpochMicros/1_000_000+microsSinceY2K/1_000_000,
		pgEpochMicros%1_000_000*1_000+microsSinceY2K%1_000_000*1_000), nil
}

// byteArena hands out copies of byte values carved from shared blocks; an empty value
// is nil (the store keeps a missing Data or Metadata as an empty bytea). Its first
// block is small and each next one twice the last, up to arenaBlock: a follower's read
// of the live tail holds an event or two, and a 64 KiB block for each such read was
// the largest share of the bytes syncd allocated in `syncctl bench --scenario
// sequential` (docs/benchmarks.md), while a rebuild's pages still fill full blocks.
type byteArena struct{ block []byte }

const (
	// arenaBlock is the size of the largest shared block; larger values get their own
	// allocation.
	arenaBlock = 64 << 10
	// arenaFirst is the size of the first block of a page.
	arenaFirst = 2 << 10
)

func (a *byteArena) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > arenaBlock/4 {
		return append([]byte(nil), b...)
	}
	if cap(a.block)-len(a.block) < len(b) {
		size := min(max(2*cap(a.block), arenaFirst), arenaBlock)
		for size < len(b) {
			size *= 2
		}
		a.block = make([]byte, 0, size)
	}
	start := len(a.block)
	a.block = append(a.block, b...)
	// A full slice expression: appending to one value can never overwrite the next.
	return a.block[start:len(a.block):len(a.block)]
}

// scanEventsGeneric reads event rows with pgx's scan plans, whatever their format.
func scanEventsGeneric(rows pgx.Rows) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	var (
		globalPos, streamPos int64
		txID                 uint64
		stream, typ          string
		id                   uuid.UUID
		data, meta           []byte
		at                   time.Time
		inline               bool
	)
	_, err := pgx.ForEachRow(rows, []any{&globalPos, &txID, &stream, &streamPos, &id, &typ, &data, &meta, &at, &inline}, func() error {
		out = append(out, eventstore.RecordedEvent{
			ID:            id,
			Stream:        stream,
			StreamVersion: uint64(streamPos),
			Type:          typ,
			Data:          nonEmpty(data),
			Metadata:      nonEmpty(meta),
			Position:      eventstore.Position{Commit: txID, Prepare: uint64(globalPos)},
			RecordedAt:    at,
			Inline:        inline,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
