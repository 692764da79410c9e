package postgres

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stacksync-es/syncservice/eventstore"
)

// appendArgOIDs are the parameter types of an exact-version append, in order.
var appendArgOIDs = []uint32{pgtype.TextOID, pgtype.UUIDArrayOID, pgtype.TextArrayOID, pgtype.ByteaArrayOID,
	pgtype.ByteaArrayOID, pgtype.Int8OID, pgtype.Int8OID}

// go test -run '^$' -bench AppendArgs -benchmem ./eventstore/postgres/
// The arguments of one append of one record, built and encoded as pgx encodes them on
// a store connection: the per-commit cost of the append statement's parameters.
func BenchmarkAppendArgs(b *testing.B) {
	m := pgtype.NewMap()
	RegisterUUID(m)
	recs := []eventstore.Record{{ID: uuid.New(), Type: "Committed", Data: make([]byte, 700), Metadata: []byte(`{"a":1}`)}}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		_, args := appendStatement("workspace-x", eventstore.Exact(16), recs, guardedAppend)
		for i, a := range args {
			var err error
			if buf, err = m.Encode(appendArgOIDs[i], pgtype.BinaryFormatCode, a, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
