package projections

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
)

// TestCopyHistoryBinary checks that copyHistory stores exactly the rows pgx's CopyFrom
// stores for the same item versions (historyRows, the encoding it replaced): NULL and
// set optional columns, no chunks, several chunks, text that needs sanitizing, times
// before 2000 and with sub-microsecond parts.
func TestCopyHistoryBinary(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []string{"copy_pgx", "copy_own"} {
		if err := migrateSchema(ctx, e.pool, workspacesModel, s); err != nil {
			t.Fatal(err)
		}
	}
	var rows []historyRow
	for i := range 300 {
		id, temp, parent, pver := domain.ItemID(1000+i), int64(-i), domain.ItemID(7+i), int64(i%5)
		md := &domain.ItemMetadata{ID: &id, Version: int64(1 + i%3), DeviceID: uuid.New(), Status: domain.StatusChanged,
			ModifiedAt: time.Date(1990+i%40, time.Month(1+i%12), 1+i%28, i%24, i%60, i%60, i*1234567, time.FixedZone("x", 3600*(i%5))),
			Checksum:   int64(i) * -99991, Size: int64(i) << 20, IsFolder: i%4 == 0, Filename: "file " + strings.Repeat("é", i%7),
			Mimetype: "text/plain"}
		switch i % 3 {
		case 0:
			md.TempID, md.ParentID, md.ParentVersion = &temp, &parent, &pver
			md.Chunks = []string{"a", "b\x00c", "é"}
		case 1:
			md.Chunks = []string{}
			md.Filename = "bad \xff\x00 name"
		}
		rows = append(rows, historyRow{ws: uuid.New(), wsVersion: int64(i + 1), md: md})
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // checked below
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"copy_pgx", "item_history"}, itemColumnNames, &historyRows{rows: rows}); err != nil {
		t.Fatal(err)
	}
	if err := copyHistory(ctx, tx, "copy_own", rows, nil); err != nil {
		t.Fatal(err)
	}
	var n, differ int
	err = tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM copy_own.item_history),
		(SELECT count(*) FROM ((SELECT * FROM copy_pgx.item_history EXCEPT SELECT * FROM copy_own.item_history)
			UNION ALL (SELECT * FROM copy_own.item_history EXCEPT SELECT * FROM copy_pgx.item_history)) d)`).Scan(&n, &differ)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(rows) || differ != 0 {
		t.Fatalf("copied %d rows of %d; %d differ from pgx's COPY", n, len(rows), differ)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// itemColumnNames are itemColumns, for COPY.
var itemColumnNames = []string{"workspace_id", "item_id", "version", "ws_version", "device_id", "parent_id",
	"parent_version", "temp_id", "status", "modified_at", "checksum", "chunks", "size", "is_folder", "filename", "mimetype"}

// historyRows feeds COPY (pgx.CopyFromSource) with item_history rows written as
// itemRows writes them.
type historyRows struct {
	rows []historyRow
	next int
}

func (r *historyRows) Next() bool { r.next++; return r.next <= len(r.rows) }

func (r *historyRows) Err() error { return nil }

func (r *historyRows) Values() ([]any, error) {
	h := r.rows[r.next-1]
	md := h.md
	var parent *int64
	if md.ParentID != nil {
		v := int64(*md.ParentID)
		parent = &v
	}
	chunks := make([]string, len(md.Chunks))
	for i, c := range md.Chunks {
		chunks[i] = pgText(c)
	}
	return []any{[16]byte(h.ws), int64(*md.ID), md.Version, h.wsVersion, [16]byte(md.DeviceID), parent,
		md.ParentVersion, md.TempID, pgText(string(md.Status)), md.ModifiedAt, md.Checksum, chunks, md.Size,
		md.IsFolder, pgText(md.Filename), pgText(md.Mimetype)}, nil
}
