package pgarray

import (
	"bytes"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// encode encodes v as pgx does a parameter of type oid in the binary format.
func encode(t *testing.T, m *pgtype.Map, oid uint32, v any) []byte {
	t.Helper()
	buf, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
	if err != nil {
		t.Fatalf("encode %T as %d: %v", v, oid, err)
	}
	return buf
}

func build[T, E any](elems []E, conv func(E) T) *Array[T] {
	var a Array[T]
	for _, e := range elems {
		a.Append(conv(e))
	}
	return &a
}

// An Array's bytes are those pgx sends for the plain slice it replaces, NULL elements
// and an empty array included.
func TestEncodesAsPgxSlices(t *testing.T) {
	m := pgtype.NewMap()
	now := time.Date(2026, 12, 6, 17, 30, 0, 123456000, time.UTC)
	ints := []int64{0, 1, -7, 1 << 53, 300}
	strs := []string{"", "a", "report.pdf", "ünïcode", `quote " and \ backslash`}
	ids := [][16]byte{{1, 2, 3}, {}, {0xff, 0xee}}
	times := []time.Time{now, now.Add(-time.Hour), time.Unix(0, 0)}
	bools := []bool{true, false, true}
	nullable := pgtype.FlatArray[pgtype.Int8]{{Int64: 4, Valid: true}, {}, {Int64: 9, Valid: true}}
	cases := []struct {
		name      string
		oid       uint32
		got, want any
	}{
		{"int8", pgtype.Int8ArrayOID, build(ints, Int8), ints},
		{"nullable int8", pgtype.Int8ArrayOID, &Array[pgtype.Int8]{Elems: nullable}, nullable},
		{"text", pgtype.TextArrayOID, build(strs, Text), strs},
		{"uuid", pgtype.UUIDArrayOID, build(ids, UUID), ids},
		{"timestamptz", pgtype.TimestamptzArrayOID, build(times, Timestamptz), times},
		{"bool", pgtype.BoolArrayOID, build(bools, Bool), bools},
		{"empty", pgtype.Int8ArrayOID, &Array[pgtype.Int8]{Elems: []pgtype.Int8{}}, []int64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, want := encode(t, m, c.oid, c.got), encode(t, m, c.oid, c.want)
			if !bytes.Equal(got, want) {
				t.Errorf("Array encodes as\n%x\nthe slice as\n%x", got, want)
			}
		})
	}
}

// An Array without elements (nil) is NULL, as a nil slice is.
func TestNilIsNull(t *testing.T) {
	m := pgtype.NewMap()
	got, err := m.Encode(pgtype.Int8ArrayOID, pgtype.BinaryFormatCode, &Array[pgtype.Int8]{}, nil)
	if err != nil || got != nil {
		t.Errorf("nil Array encodes as %x, %v; want NULL (nil)", got, err)
	}
}

// The point of the package: encoding costs the same allocations whatever the number of
// elements (a slice costs one more per element).
func TestNoAllocationPerElement(t *testing.T) {
	m := pgtype.NewMap()
	now := time.Now()
	allocs := func(n int) float64 {
		ints, strs, ids, times := &Array[pgtype.Int8]{}, &Array[pgtype.Text]{}, &Array[pgtype.UUID]{}, &Array[pgtype.Timestamptz]{}
		for i := range n {
			ints.Append(Int8(int64(1000 + i)))
			strs.Append(Text("chunk-name"))
			ids.Append(UUID([16]byte{byte(i)}))
			times.Append(Timestamptz(now))
		}
		buf := make([]byte, 0, 4096)
		return testing.AllocsPerRun(50, func() {
			for _, p := range []struct {
				oid uint32
				v   any
			}{{pgtype.Int8ArrayOID, ints}, {pgtype.TextArrayOID, strs}, {pgtype.UUIDArrayOID, ids}, {pgtype.TimestamptzArrayOID, times}} {
				var err error
				if buf, err = m.Encode(p.oid, pgtype.BinaryFormatCode, p.v, buf[:0]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	if one, many := allocs(1), allocs(16); many != one {
		t.Errorf("encoding 4 arrays of 16 elements allocates %v times, of 1 element %v times: want the same", many, one)
	}
}
