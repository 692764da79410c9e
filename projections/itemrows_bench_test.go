package projections

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stacksync-es/syncservice/domain"
)

// itemRowsOIDs are the parameter types of itemsFromUnnest, in order.
var itemRowsOIDs = []uint32{pgtype.UUIDArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID,
	pgtype.UUIDArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID, pgtype.Int8ArrayOID, pgtype.TextArrayOID,
	pgtype.TimestamptzArrayOID, pgtype.Int8ArrayOID, pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.BoolArrayOID,
	pgtype.TextArrayOID, pgtype.TextArrayOID}

// go test -run '^$' -bench ItemRowsEncode -benchmem ./projections/
// The parameters of one inline item write (one and eight rows), encoded as pgx encodes
// them for the statement: the per-commit cost of the items' arrays.
func BenchmarkItemRowsEncode(b *testing.B) {
	id, parent := domain.ItemID(4002), domain.ItemID(4001)
	md := domain.ItemMetadata{ID: &id, TempID: new(int64(7)), Version: 3, DeviceID: uuid.New(), WorkspaceID: uuid.New(),
		ParentID: &parent, ParentVersion: new(int64(1)), Status: "CHANGED", ModifiedAt: time.Now(), Checksum: 99,
		Chunks: []string{"chk-a", "chk-b"}, Size: 524288, Filename: "report.pdf", Mimetype: "application/pdf"}
	for _, n := range []int{1, 8} {
		b.Run(map[int]string{1: "1row", 8: "8rows"}[n], func(b *testing.B) {
			m := pgtype.NewMap()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var r itemRows
				for range n {
					r.add(md.WorkspaceID, 17, &md)
				}
				for i, a := range r.args() {
					var err error
					if buf, err = m.Encode(itemRowsOIDs[i], pgtype.BinaryFormatCode, a, buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
