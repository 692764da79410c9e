package postgres

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// The registered plans encode exactly the bytes pgx's own fallback (driver.Valuer, text)
// means, in both formats: compared here through pgtype.UUID, the type pgx encodes
// natively, for a value, a slice, an empty slice and a nil slice (NULL).
func TestRegisterUUIDEncodesAsPgtypeUUID(t *testing.T) {
	plain, fast := pgtype.NewMap(), pgtype.NewMap()
	RegisterUUID(fast)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.Nil}
	native := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		native[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	cases := []struct {
		name      string
		oid       uint32
		value     any
		reference any
	}{
		{"uuid", pgtype.UUIDOID, ids[0], native[0]},
		{"uuid nil", pgtype.UUIDOID, uuid.Nil, native[2]},
		{"uuid[]", pgtype.UUIDArrayOID, ids, native},
		{"uuid[] empty", pgtype.UUIDArrayOID, []uuid.UUID{}, []pgtype.UUID{}},
		{"uuid[] nil", pgtype.UUIDArrayOID, []uuid.UUID(nil), []pgtype.UUID(nil)},
	}
	for _, c := range cases {
		for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
			want, err := plain.Encode(c.oid, format, c.reference, nil)
			if err != nil {
				t.Fatalf("%s/%d reference: %v", c.name, format, err)
			}
			got, err := fast.Encode(c.oid, format, c.value, nil)
			if err != nil {
				t.Fatalf("%s/%d: %v", c.name, format, err)
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Errorf("%s/%d: got %x, want %x", c.name, format, got, want)
			}
			// And what the fallback without the registration sends means the same.
			old, err := plain.Encode(c.oid, format, c.value, nil)
			if err != nil {
				t.Fatalf("%s/%d fallback: %v", c.name, format, err)
			}
			var a, b any
			if err := decodeBack(plain, c.oid, format, old, &a); err != nil {
				t.Fatalf("%s/%d decode fallback: %v", c.name, format, err)
			}
			if err := decodeBack(plain, c.oid, format, got, &b); err != nil {
				t.Fatalf("%s/%d decode: %v", c.name, format, err)
			}
			if !equalDecoded(a, b) {
				t.Errorf("%s/%d: fallback means %v, registered %v", c.name, format, a, b)
			}
		}
	}
}

func decodeBack(m *pgtype.Map, oid uint32, format int16, src []byte, dst *any) error {
	if oid == pgtype.UUIDOID {
		var u pgtype.UUID
		err := m.Scan(oid, format, src, &u)
		*dst = u
		return err
	}
	var us []pgtype.UUID
	err := m.Scan(oid, format, src, &us)
	*dst = us
	return err
}

func equalDecoded(a, b any) bool {
	switch x := a.(type) {
	case pgtype.UUID:
		return x == b.(pgtype.UUID)
	case []pgtype.UUID:
		y := b.([]pgtype.UUID)
		if (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return false
}

// go test -run '^$' -bench EncodeUUID -benchmem ./eventstore/postgres/
func BenchmarkEncodeUUID(b *testing.B) {
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = uuid.New()
	}
	for _, reg := range []bool{false, true} {
		m := pgtype.NewMap()
		name := "pgx-default"
		if reg {
			RegisterUUID(m)
			name = "registered"
		}
		b.Run(name+"/uuid", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256)
			for b.Loop() {
				if _, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, ids[0], buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/uuid[4]", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256)
			for b.Loop() {
				if _, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
