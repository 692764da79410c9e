package postgres

import (
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// RegisterUUID makes m encode google/uuid values (uuid.UUID and []uuid.UUID) as
// PostgreSQL uuid and uuid[] directly in the binary format. Without it pgx finds no plan
// for the named [16]byte type and falls back to its driver.Valuer: a string per value,
// encoded as text, and, for a slice, a reflect-based walk over its elements; that was
// about 5% of syncd's CPU per commit (the append's ids and the inline read models'
// uuid columns). The bytes sent are those of pgtype.UUID: nothing changes on the wire
// to PostgreSQL's meaning. The store registers it on each of its connections
// (AfterConnect); other pools may call it from their own AfterConnect.
func RegisterUUID(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapUUIDEncodePlan}, m.TryWrapEncodePlanFuncs...)
}

// registerUUIDOnConnect is an AfterConnect hook that calls RegisterUUID.
func registerUUIDOnConnect(conn *pgx.Conn) { RegisterUUID(conn.TypeMap()) }

func tryWrapUUIDEncodePlan(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	switch v := value.(type) {
	case uuid.UUID:
		return &wrapUUIDEncodePlan{}, pgtype.UUID{Bytes: v, Valid: true}, true
	case []uuid.UUID:
		return &wrapUUIDSliceEncodePlan{}, uuidArray(v), true
	}
	return nil, nil, false
}

type wrapUUIDEncodePlan struct{ next pgtype.EncodePlan }

func (p *wrapUUIDEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *wrapUUIDEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(pgtype.UUID{Bytes: value.(uuid.UUID), Valid: true}, buf)
}

type wrapUUIDSliceEncodePlan struct{ next pgtype.EncodePlan }

func (p *wrapUUIDSliceEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *wrapUUIDSliceEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(uuidArray(value.([]uuid.UUID)), buf)
}

// uuidArray is a one-dimensional uuid[] (pgtype.ArrayGetter); nil encodes as NULL, as a
// nil []uuid.UUID did.
type uuidArray []uuid.UUID

func (a uuidArray) Dimensions() []pgtype.ArrayDimension {
	if a == nil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a uuidArray) Index(i int) any { return pgtype.UUID{Bytes: a[i], Valid: true} }

func (a uuidArray) IndexType() any { return pgtype.UUID{} }
