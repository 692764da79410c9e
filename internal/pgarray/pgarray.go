// Package pgarray holds one-dimensional PostgreSQL array parameters that pgx encodes
// without an allocation per element. It owns nothing else and must never hold a
// connection or know a table.
//
// pgx encodes a slice ([]int64, []string, pgtype.FlatArray[T], ...) through
// pgtype.ArrayGetter, whose Index returns each element as an interface value: one
// allocation per element for every element larger than a pointer or not a small
// integer. An Array's Index returns a pointer to its element instead, which an
// interface holds without allocating; T is a pgtype value type whose pointer satisfies
// its codec's valuer interface (pgtype.Int8, pgtype.Text, pgtype.UUID,
// pgtype.Timestamptz, pgtype.Bool), so pgx encodes each element with no reflection
// and no copy. The bytes sent are those of pgx's own array encoding.
package pgarray

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Array is a one-dimensional array parameter; pass a *Array to pgx. An Array whose
// Elems is nil encodes as NULL, as a nil slice does.
type Array[T any] struct {
	Elems []T
	dims  [1]pgtype.ArrayDimension
}

// Append adds one element.
func (a *Array[T]) Append(v T) { a.Elems = append(a.Elems, v) }

// Len is the number of elements.
func (a *Array[T]) Len() int { return len(a.Elems) }

// Dimensions implements pgtype.ArrayGetter.
func (a *Array[T]) Dimensions() []pgtype.ArrayDimension {
	if a.Elems == nil {
		return nil
	}
	a.dims[0] = pgtype.ArrayDimension{Length: int32(len(a.Elems)), LowerBound: 1}
	return a.dims[:]
}

// Index implements pgtype.ArrayGetter: a pointer to element i.
func (a *Array[T]) Index(i int) any { return &a.Elems[i] }

// IndexType implements pgtype.ArrayGetter.
func (a *Array[T]) IndexType() any { return (*T)(nil) }

// Int8 is n as a non-null bigint.
func Int8(n int64) pgtype.Int8 { return pgtype.Int8{Int64: n, Valid: true} }

// Text is s as a non-null text value.
func Text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: true} }

// UUID is id as a non-null uuid.
func UUID(id [16]byte) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// Timestamptz is t as a non-null timestamptz.
func Timestamptz(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }

// Bool is b as a non-null boolean.
func Bool(b bool) pgtype.Bool { return pgtype.Bool{Bool: b, Valid: true} }
