package domain

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrUnknownEventType is returned when decoding a type name this version does not know.
var ErrUnknownEventType = errors.New("domain: unknown event type")

// ErrMalformedEvent is returned when an event's bytes do not decode into its type.
var ErrMalformedEvent = errors.New("domain: malformed event")

var decoders = map[string]func([]byte) (Event, error){
	TypeWorkspaceCreated:       decodeAs[WorkspaceCreated],
	TypeMemberAdded:            decodeAs[MemberAdded],
	TypeMemberRemoved:          decodeAs[MemberRemoved],
	TypeMemberWorkspaceUpdated: decodeAs[MemberWorkspaceUpdated],
	TypeCommitted:              decodeAs[Committed],
	TypeUserCreated:            decodeAs[UserCreated],
	TypeUserQuotaChanged:       decodeAs[UserQuotaChanged],
	TypeUserRemoved:            decodeAs[UserRemoved],
	TypeDeviceRegistered:       decodeAs[DeviceRegistered],
	TypeDeviceUpdated:          decodeAs[DeviceUpdated],
	TypeDeviceRemoved:          decodeAs[DeviceRemoved],
	TypeItemsMovedOut:          decodeAs[ItemsMovedOut],
	TypeItemsMovedIn:           decodeAs[ItemsMovedIn],
}

// EventTypes lists every released event type name, sorted.
func EventTypes() []string {
	names := make([]string, 0, len(decoders))
	for n := range decoders {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Encode returns the stored form of e: its type name and JSON body. A Committed, the
// event of every commit, is rendered by hand (appendCommitted), the same bytes.
func Encode(e Event) (string, []byte, error) {
	if c, ok := e.(Committed); ok {
		if data, ok := appendCommitted(make([]byte, 0, committedSize(&c)), &c); ok {
			return TypeCommitted, data, nil
		}
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return e.EventType(), data, nil
}

// Decode turns a stored type name and body back into an event. Unknown fields are
// ignored; an unknown type is ErrUnknownEventType; bytes that are not the type's JSON
// are ErrMalformedEvent.
func Decode(typ string, data []byte) (Event, error) {
	dec, ok := decoders[typ]
	if !ok {
		return nil, fmt.Errorf("decode %q: %w", typ, ErrUnknownEventType)
	}
	return dec(data)
}

func decodeAs[T Event](data []byte) (Event, error) {
	var v T
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", v.EventType(), ErrMalformedEvent, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode %s: %w: trailing data", v.EventType(), ErrMalformedEvent)
	}
	return v, nil
}

// ChainHash is the hash of a stored event, which the stream's next event carries as
// its PrevHash: hex SHA-256 over the type name, a NUL byte and the stored body. Since
// the body holds the previous hash, altering, removing, inserting or reordering any
// event breaks the chain from there on.
func ChainHash(typ string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}
