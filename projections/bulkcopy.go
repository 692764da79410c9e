package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyHistory copies item versions into item_history of schema within tx, by COPY in
// the binary format, encoding the rows itself: pgx's CopyFrom boxes every value in an
// interface and looks up an encode plan for each (16 columns × 1.6M versions in a
// million-event rebuild: about 2 Go CPU-s per million events and much of the garbage).
// The bytes are those pgx's binary encoders write for the same values (a test holds the
// two to the same rows). With kept, it records there each version's tuple (see
// latestItems).
func copyHistory(ctx context.Context, tx pgx.Tx, schema string, rows []historyRow, kept *bulkKept) error {
	b := make([]byte, 0, len(copyHeader)+256*len(rows)+2)
	b = append(b, copyHeader...)
	if kept != nil {
		kept.rows = slices.Grow(kept.rows[:0], len(rows))
	}
	for i := range rows {
		start := len(b)
		b = appendHistoryTuple(b, &rows[i])
		if kept != nil {
			h := &rows[i]
			kept.rows = append(kept.rows, keptRow{key: itemKey{h.ws, *h.md.ID}, version: h.md.Version, start: start, end: len(b)})
		}
	}
	b = binary.BigEndian.AppendUint16(b, 0xffff) // the trailer: a tuple of -1 fields
	if kept != nil {
		kept.buf = b
	}
	sql := `COPY ` + pgx.Identifier{schema, "item_history"}.Sanitize() + ` (` + itemColumns + `) FROM STDIN WITH (FORMAT binary)`
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b), sql); err != nil {
		return fmt.Errorf("copy %d item versions: %w", len(rows), err)
	}
	return nil
}

// copyHeader starts a binary COPY: the signature, no flags, no header extension.
const copyHeader = "PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"

// historyColumns is the number of itemColumns.
const historyColumns = 16

// appendHistoryTuple appends one item_history row in itemColumns' order, its values
// as historyRows.Values gives them to pgx.
func appendHistoryTuple(b []byte, h *historyRow) []byte {
	md := h.md
	b = binary.BigEndian.AppendUint16(b, historyColumns)
	b = appendField(b, h.ws[:])
	b = appendInt8(b, int64(*md.ID))
	b = appendInt8(b, md.Version)
	b = appendInt8(b, h.wsVersion)
	b = appendField(b, md.DeviceID[:])
	if md.ParentID != nil {
		b = appendInt8(b, int64(*md.ParentID))
	} else {
		b = appendNull(b)
	}
	b = appendNullInt8(b, md.ParentVersion)
	b = appendNullInt8(b, md.TempID)
	b = appendText(b, pgText(string(md.Status)))
	b = appendInt8(b, timestamptzMicros(md.ModifiedAt))
	b = appendInt8(b, md.Checksum)
	b = appendTextArray(b, md.Chunks)
	b = appendInt8(b, md.Size)
	if md.IsFolder {
		b = appendField(b, []byte{1})
	} else {
		b = appendField(b, []byte{0})
	}
	b = appendText(b, pgText(md.Filename))
	return appendText(b, pgText(md.Mimetype))
}

func appendField(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 0xffffffff) }

func appendInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendNullInt8(b []byte, v *int64) []byte {
	if v == nil {
		return appendNull(b)
	}
	return appendInt8(b, *v)
}

// appendTextArray appends a one-dimensional text[] of chunks (sanitized as pgText); no
// chunks is the empty array, as pgx writes an empty slice.
func appendTextArray(b []byte, chunks []string) []byte {
	lenAt := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // the field's length, set below
	if len(chunks) == 0 {
		b = binary.BigEndian.AppendUint32(b, 0) // no dimensions
	} else {
		b = binary.BigEndian.AppendUint32(b, 1)
	}
	b = binary.BigEndian.AppendUint32(b, 0) // no NULL element
	b = binary.BigEndian.AppendUint32(b, pgtype.TextOID)
	if len(chunks) > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(chunks)))
		b = binary.BigEndian.AppendUint32(b, 1) // the lower bound
		for _, c := range chunks {
			b = appendText(b, pgText(c))
		}
	}
	binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
	return b
}

// pgEpochMicros is 2000-01-01 00:00 UTC, PostgreSQL's epoch, in microseconds after the Unix epoch.
const pgEpochMicros = 946_684_800 * 1_000_000

// timestamptzMicros is t as a binary timestamptz, microseconds after 2000-01-01 UTC, as
// pgx encodes a time.Time.
func timestamptzMicros(t time.Time) int64 {
	return t.Unix()*1_000_000 + int64(t.Nanosecond())/1000 - pgEpochMicros
}
