package projections

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// latestItems keeps, during a bulk replay of the workspaces model, each item's latest
// stored version (the binary COPY tuple copyHistory wrote for it into item_history) and
// the items that moved out of their workspace, so that the finish copies items straight
// from memory (copyLatestItems) instead of computing them from item_history (fillItemsSQL:
// a hash anti-join over every version, most of the finish of a large rebuild; see
// docs/benchmarks.md, "Rebuild on a slower machine"). The rows are the same: for every
// item of a workspace that it did not move out of, its highest stored version.
//
// It keeps only what committed: a bulk transaction records what it copied in a
// bulkKept, and the replay hands that to keep after the commit. It is bounded: past
// limit bytes (the tuples plus an estimate of the bookkeeping per item) it lets go of
// everything and the finish falls back to the SQL fill. A nil *latestItems keeps
// nothing.
type latestItems struct {
	limit    int64
	bytes    int64
	over     bool
	index    map[itemKey]int32 // the row of each item; no pointers for the GC to scan
	rows     []latestRow
	movedOut map[itemKey]struct{}
}

// latestRow is one item's latest version so far.
type latestRow struct {
	key     itemKey
	version int64
	tuple   []byte // its binary COPY tuple, in itemColumns' order
}

// Estimates of the memory an item and a moved-out item cost besides a tuple's bytes:
// the map entry, the row and the tuple's allocation header.
const (
	latestRowOverhead  = 112
	movedOutOverhead   = 48
	maxLatestItemsRows = 1<<31 - 1
)

// newLatestItems returns a tracker bounded by limit bytes, or nil (keep nothing) when
// limit is not positive.
func newLatestItems(limit int64) *latestItems {
	if limit <= 0 {
		return nil
	}
	return &latestItems{limit: limit, index: map[itemKey]int32{}, movedOut: map[itemKey]struct{}{}}
}

// keeping reports whether l still keeps what bulk transactions record.
func (l *latestItems) keeping() bool { return l != nil && !l.over }

// usable reports whether l holds every committed item version of the replay, so that
// items can be copied from it.
func (l *latestItems) usable() bool { return l.keeping() }

// keep takes in what one committed bulk transaction copied.
func (l *latestItems) keep(k *bulkKept) {
	if !l.keeping() {
		return
	}
	for _, r := range k.rows {
		t := k.buf[r.start:r.end]
		i, ok := l.index[r.key]
		switch {
		case !ok:
			if len(l.rows) >= maxLatestItemsRows {
				l.drop()
				return
			}
			l.index[r.key] = int32(len(l.rows))
			tuple := append([]byte(nil), t...)
			l.rows = append(l.rows, latestRow{key: r.key, version: r.version, tuple: tuple})
			l.bytes += int64(cap(tuple)) + latestRowOverhead
		case r.version > l.rows[i].version:
			row := &l.rows[i]
			before := cap(row.tuple)
			row.version, row.tuple = r.version, append(row.tuple[:0], t...)
			l.bytes += int64(cap(row.tuple) - before)
		}
	}
	for _, key := range k.movedOut {
		if _, ok := l.movedOut[key]; !ok {
			l.movedOut[key] = struct{}{}
			l.bytes += movedOutOverhead
		}
	}
	if l.bytes > l.limit {
		l.drop()
	}
}

// drop lets go of everything: the finish computes items in SQL.
func (l *latestItems) drop() {
	if l == nil {
		return
	}
	l.over = true
	l.index, l.rows, l.movedOut, l.bytes = nil, nil, nil, 0
}

// bulkKept is what one bulk transaction copied into item_history (the COPY data and
// where each version's tuple lies in it) and the items it noted as moved out.
type bulkKept struct {
	buf      []byte
	rows     []keptRow
	movedOut []itemKey
}

type keptRow struct {
	key        itemKey
	version    int64
	start, end int // the tuple is buf[start:end]
}

// copyLatestItems sets the items table in schema to the rows l holds, within one
// transaction: the items that did not move out of their workspace, each at its latest
// version. The finish of a bulk replay runs it in place of fillItems.
func copyLatestItems(ctx context.Context, pool *pgxpool.Pool, schema string, l *latestItems) error {
	items := pgx.Identifier{schema, "items"}.Sanitize()
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("copy items of %s: begin: %w", schema, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, `TRUNCATE `+items); err != nil {
		return fmt.Errorf("copy items of %s: %w", schema, err)
	}
	sql := `COPY ` + items + ` (` + itemColumns + `) FROM STDIN WITH (FORMAT binary)`
	// The reader holds the rows and the moved-out set themselves: pgconn may return from
	// CopyFrom on a server error while its goroutine still reads, and the caller then
	// drops l.
	r := &latestReader{rows: l.rows, movedOut: l.movedOut, cur: []byte(copyHeader)}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, sql); err != nil {
		return fmt.Errorf("copy %d items into %s: %w", len(l.rows), items, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("copy items of %s: commit: %w", schema, err)
	}
	return nil
}

// latestReader reads the binary COPY data of l's items: the header, the tuple of every
// item that did not move out, the trailer.
type latestReader struct {
	rows     []latestRow
	movedOut map[itemKey]struct{} // only read
	next     int                  // the next row
	cur      []byte               // what is left of the current piece
	done     bool                 // the trailer is in cur or read
}

func (r *latestReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.cur) == 0 && !r.advance() {
			break
		}
		c := copy(p[n:], r.cur)
		r.cur, n = r.cur[c:], n+c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// advance sets cur to the next piece; false after the trailer.
func (r *latestReader) advance() bool {
	for r.next < len(r.rows) {
		row := &r.rows[r.next]
		r.next++
		if _, out := r.movedOut[row.key]; !out {
			r.cur = row.tuple
			return true
		}
	}
	if r.done {
		return false
	}
	r.done = true
	r.cur = binary.BigEndian.AppendUint16(nil, 0xffff) // the trailer: a tuple of -1 fields
	return true
}

// size is the memory l accounts for.
func (l *latestItems) size() int64 {
	if l == nil {
		return 0
	}
	return l.bytes
}
