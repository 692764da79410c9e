// Package wire owns the JSON shapes of sync protocol v1 (PROTOCOL.md §2–§4, and the
// sharing shapes of §8 in share.go): request and response envelopes, notifyCommit
// events and the user events of sharing, the request objects of every method, the
// result types, and the table of error codes. It only converts between those shapes and
// the protocol's vocabulary (domain/protocol, domain), and checks that a request is
// well-formed. It does no I/O, and it must not depend on the service: the device library
// (transport/client) links it.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// MaxBodySize is the largest request body the server reads; larger ones are refused with
// InvalidRequest (PROTOCOL.md §2 allows refusing bodies over 16 MiB).
const MaxBodySize = 16 << 20

// IDOmq is the idOmq of every response and the app_id of every reply.
const IDOmq = "ISyncService"

// TimeLayout is the wire form of times: RFC 3339, UTC, millisecond precision.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime renders t in the wire form.
func FormatTime(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(TimeLayout) }

// ErrInvalid marks a request that is not well-formed (InvalidRequest). Check with errors.Is.
var ErrInvalid = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Request is a decoded request envelope; Params is the raw request object.
type Request struct {
	Method string
	Params json.RawMessage
	ID     string
	Async  bool
}

// CheckBodySize refuses a body of n bytes over MaxBodySize with InvalidRequest. The
// server calls it first thing on a delivery, before anything parses the body.
func CheckBodySize(n int) error {
	if n > MaxBodySize {
		return invalid("body of %d bytes exceeds the limit of %d", n, MaxBodySize)
	}
	return nil
}

// ParseRequest decodes a request envelope: an object with a string method, params of
// exactly one object, an id, and async as a boolean or "true"/"false". A plain envelope
// takes the fast path (fastparse.go), whose Params share body's bytes; anything else,
// and every error, goes through encoding/json.
func ParseRequest(body []byte) (Request, error) {
	if err := CheckBodySize(len(body)); err != nil {
		return Request{}, err
	}
	if req, ok := fastRequest(body); ok {
		return req, nil
	}
	return parseEnvelope(body)
}

// parseEnvelope is ParseRequest through encoding/json.
func parseEnvelope(body []byte) (Request, error) {
	var env struct {
		Method *string           `json:"method"`
		Params []json.RawMessage `json:"params"`
		ID     json.RawMessage   `json:"id"`
		Async  json.RawMessage   `json:"async"`
	}
	if err := strictObject(body, &env); err != nil {
		return Request{}, invalid("envelope: %v", err)
	}
	if env.Method == nil || *env.Method == "" {
		return Request{}, invalid("envelope: method missing")
	}
	if len(env.Params) != 1 {
		return Request{}, invalid("envelope: params must hold exactly one request object, has %d", len(env.Params))
	}
	if p := bytes.TrimSpace(env.Params[0]); len(p) == 0 || p[0] != '{' {
		return Request{}, invalid("envelope: params[0] must be an object")
	}
	req := Request{Method: *env.Method, Params: env.Params[0]}
	if len(env.ID) > 0 && string(env.ID) != "null" {
		if err := json.Unmarshal(env.ID, &req.ID); err != nil {
			return Request{}, invalid("envelope: id must be a string")
		}
	}
	switch strings.TrimSpace(string(env.Async)) {
	case "", "null", "false", `"false"`:
	case "true", `"true"`:
		req.Async = true
	default:
		return Request{}, invalid("envelope: async must be a boolean or \"true\"/\"false\"")
	}
	return req, nil
}

// strictObject decodes an object, reporting wrong types; unknown fields are ignored.
//
// A well-formed body (one JSON value, nothing but white space after it, every field of
// its type) decodes through json.Unmarshal, which accepts exactly those; anything else
// is decoded again, into a zeroed v, by the stream decoder whose error messages the
// golden and fuzz tests pin (json.Unmarshal words several of them differently).
func strictObject(data []byte, v any) error {
	if json.Unmarshal(data, v) == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero()
	return strictObjectStream(data, v)
}

// strictObjectStream is strictObject through a json.Decoder, for its error messages.
func strictObjectStream(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	return nil
}

// Error is the error object of a response.
type Error struct {
	Type         string `json:"type"`
	Message      string `json:"message"`
	RetryAfterMs *int64 `json:"retryAfterMs,omitempty"`
}

// Response is a response envelope. Result is omitted when nil.
type Response struct {
	Result any    `json:"result,omitempty"`
	Error  *Error `json:"error,omitempty"`
	ID     string `json:"id"`
	IDOmq  string `json:"idOmq"`
}

// EncodeResponse renders a success (result may be nil for a void method) or an error.
func EncodeResponse(id string, result any, e *Error) ([]byte, error) {
	if result == nil && e == nil {
		return appendVoidResponse(make([]byte, 0, len(id)+40), id), nil
	}
	r := Response{Result: result, Error: e, ID: id, IDOmq: IDOmq}
	if e != nil {
		r.Result = nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode response %s: %w", id, err)
	}
	return b, nil
}

// Event is a notifyCommit event envelope.
type Event struct {
	Method string               `json:"method"`
	Params []CommitNotification `json:"params"`
	ID     string               `json:"id"`
	Async  bool                 `json:"async"`
}

// ParseUUID parses a UUID field, requiring it present.
func parseUUID(field string, s *string) (uuid.UUID, error) {
	if s == nil {
		return uuid.Nil, invalid("%s missing", field)
	}
	id, err := uuid.Parse(*s)
	if err != nil {
		return uuid.Nil, invalid("%s: not a UUID: %q", field, *s)
	}
	return id, nil
}

func parseOptUUID(field string, s *string) (*uuid.UUID, error) {
	if s == nil {
		return nil, nil
	}
	id, err := parseUUID(field, s)
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// ItemMetadata is the wire form of an item version (PROTOCOL.md §3).
type ItemMetadata struct {
	ID            *int64   `json:"id"`
	TempID        *int64   `json:"tempId"`
	Version       *int64   `json:"version"`
	DeviceID      *string  `json:"deviceId"`
	WorkspaceID   *string  `json:"workspaceId"`
	ParentID      *int64   `json:"parentId"`
	ParentVersion *int64   `json:"parentVersion"`
	Status        *string  `json:"status"`
	ModifiedAt    *string  `json:"modifiedAt"`
	Checksum      *int64   `json:"checksum"`
	Chunks        []string `json:"chunks"`
	Size          *int64   `json:"size"`
	IsFolder      *bool    `json:"isFolder"`
	Filename      *string  `json:"filename"`
	Mimetype      *string  `json:"mimetype"`
}

// FromItem renders a domain item version.
func FromItem(m domain.ItemMetadata) ItemMetadata {
	w := ItemMetadata{
		TempID:        m.TempID,
		Version:       ptr(m.Version),
		DeviceID:      ptr(m.DeviceID.String()),
		WorkspaceID:   ptr(m.WorkspaceID.String()),
		ParentVersion: m.ParentVersion,
		Status:        ptr(string(m.Status)),
		ModifiedAt:    ptr(FormatTime(m.ModifiedAt)),
		Checksum:      ptr(m.Checksum),
		Chunks:        m.Chunks,
		Size:          ptr(m.Size),
		IsFolder:      ptr(m.IsFolder),
		Filename:      ptr(m.Filename),
		Mimetype:      ptr(m.Mimetype),
	}
	if w.Chunks == nil {
		w.Chunks = []string{}
	}
	if m.ID != nil {
		w.ID = ptr(int64(*m.ID))
	}
	if m.ParentID != nil {
		w.ParentID = ptr(int64(*m.ParentID))
	}
	return w
}

// FromItems renders a list of item versions (never null).
func FromItems(ms []domain.ItemMetadata) []ItemMetadata {
	out := make([]ItemMetadata, len(ms))
	for i, m := range ms {
		out[i] = FromItem(m)
	}
	return out
}

// ToItem checks that a committed item is well-formed and converts it. Missing required
// fields (version, status, modifiedAt, isFolder, filename) and unparseable values are
// InvalidRequest; values out of range (a negative size, an unknown status) are left to
// the domain, which fails the item alone. Absent checksum and size read as 0, absent
// chunks as [], absent mimetype as "".
func (w ItemMetadata) ToItem(i int) (domain.ItemMetadata, error) {
	var m domain.ItemMetadata
	field := func(name string) string { return fmt.Sprintf("items[%d].%s", i, name) }
	switch {
	case w.Version == nil:
		return m, invalid("%s missing", field("version"))
	case w.Status == nil:
		return m, invalid("%s missing", field("status"))
	case w.ModifiedAt == nil:
		return m, invalid("%s missing", field("modifiedAt"))
	case w.IsFolder == nil:
		return m, invalid("%s missing", field("isFolder"))
	case w.Filename == nil:
		return m, invalid("%s missing", field("filename"))
	}
	t, err := time.Parse(time.RFC3339Nano, *w.ModifiedAt)
	if err != nil {
		return m, invalid("%s: not an RFC 3339 time: %q", field("modifiedAt"), *w.ModifiedAt)
	}
	if w.DeviceID != nil {
		if m.DeviceID, err = parseUUID(field("deviceId"), w.DeviceID); err != nil {
			return m, err
		}
	}
	if w.WorkspaceID != nil {
		if m.WorkspaceID, err = parseUUID(field("workspaceId"), w.WorkspaceID); err != nil {
			return m, err
		}
	}
	if w.ID != nil {
		m.ID = ptr(domain.ItemID(*w.ID))
	}
	if w.ParentID != nil {
		m.ParentID = ptr(domain.ItemID(*w.ParentID))
	}
	m.TempID = w.TempID
	m.Version = *w.Version
	m.ParentVersion = w.ParentVersion
	m.Status = domain.Status(*w.Status)
	m.ModifiedAt = t
	m.Checksum = deref(w.Checksum)
	m.Size = deref(w.Size)
	m.Chunks = w.Chunks
	if m.Chunks == nil {
		m.Chunks = []string{}
	}
	m.IsFolder = *w.IsFolder
	m.Filename = *w.Filename
	m.Mimetype = deref(w.Mimetype)
	return m, nil
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
