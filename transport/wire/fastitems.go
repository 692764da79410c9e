package wire

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// The decoders of what a device receives: a reply's envelope and a list of item
// versions (the result of getChanges and getItemVersions, a page's items). A 100,000-item
// getChanges answer is about 43 MB of JSON; through encoding/json (the envelope into a
// RawMessage, the result into []ItemMetadata by reflection, then ToItem) the client took
// about a second of CPU per answer (docs/benchmarks.md). The fast paths below read it in
// one pass with fastScan, straight into domain items; like the request decoders they
// decline (ok false) anything fastScan declines and anything the slow path would refuse,
// and the caller then takes the slow path, which gives its result or its error as before
// (FuzzFastItemsMatch, FuzzFastReplyMatches).

// Reply is a reply envelope as a device decodes it (PROTOCOL.md §2; Response is the
// server's side).
type Reply struct {
	Result json.RawMessage `json:"result"`
	Error  *Error          `json:"error"`
	ID     string          `json:"id"`
}

// ParseReply decodes a reply envelope as json.Unmarshal into a Reply would, except
// that Result aliases body (the caller must not modify body while it uses Result).
func ParseReply(body []byte) (Reply, error) {
	if r, ok := fastReply(body); ok {
		return r, nil
	}
	var r Reply
	if err := json.Unmarshal(body, &r); err != nil {
		return Reply{}, fmt.Errorf("decode reply: %w", err)
	}
	return r, nil
}

var replyKeys = []string{"result", "error", "id"}

// fastReply is ParseReply's fast path; it declines a non-null error (replies with
// one are small: encoding/json decodes them).
func fastReply(body []byte) (r Reply, ok bool) {
	s := fastScan{b: body}
	ok = s.object(replyKeys, func(key []byte) bool {
		switch string(key) {
		case "result":
			s.ws()
			start := s.i
			if !s.skip() {
				return false
			}
			r.Result = body[start:s.i:s.i]
			return true
		case "error":
			return s.null()
		default: // id
			if s.null() {
				r.ID = ""
				return true
			}
			v, ok := s.str()
			r.ID = v
			return ok
		}
	})
	if !ok || !s.end() {
		return Reply{}, false
	}
	return r, true
}

// ParseItems decodes a JSON array of item versions into domain items: what
// json.Unmarshal into []ItemMetadata followed by ToItem of each element gives, result
// or error (an error names the element: items[i]).
func ParseItems(data []byte) ([]domain.ItemMetadata, error) {
	if items, ok := fastItems(data); ok {
		return items, nil
	}
	return slowItems(data)
}

// slowItems is ParseItems' slow path alone (and the fuzz tests' reference):
// encoding/json, then ToItem of each element.
func slowItems(data []byte) ([]domain.ItemMetadata, error) {
	var ws []ItemMetadata
	if err := json.Unmarshal(data, &ws); err != nil {
		return nil, fmt.Errorf("decode items: %w", err)
	}
	out := make([]domain.ItemMetadata, len(ws))
	for i, w := range ws {
		m, err := w.ToItem(i)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// itemAlloc hands out the optional integers of decoded items from shared blocks, and
// the values of statuses and mimetypes every item repeats from one copy each.
type itemAlloc struct {
	ids     []domain.ItemID
	ints    []int64
	strs    []string // chunk lists are carved from it
	scratch []string // a chunk list being decoded
	intern  map[string]string
	// lastTime and lastAt are the last modifiedAt parsed (the items of one commit
	// usually share it).
	lastTime []byte
	lastAt   time.Time
}

const itemAllocBlock = 1024

func (a *itemAlloc) id(v int64) *domain.ItemID {
	if len(a.ids) == cap(a.ids) {
		a.ids = make([]domain.ItemID, 0, itemAllocBlock)
	}
	a.ids = append(a.ids, domain.ItemID(v))
	return &a.ids[len(a.ids)-1]
}

func (a *itemAlloc) int(v int64) *int64 {
	if len(a.ints) == cap(a.ints) {
		a.ints = make([]int64, 0, itemAllocBlock)
	}
	a.ints = append(a.ints, v)
	return &a.ints[len(a.ints)-1]
}

// chunks returns a copy of list carved from a shared block (capped: an append to it
// never writes into another item's list).
func (a *itemAlloc) chunks(list []string) []string {
	if len(list) > itemAllocBlock/8 {
		return append([]string{}, list...)
	}
	if cap(a.strs)-len(a.strs) < len(list) {
		a.strs = make([]string, 0, itemAllocBlock)
	}
	start := len(a.strs)
	a.strs = append(a.strs, list...)
	return a.strs[start:len(a.strs):len(a.strs)]
}

// time parses a modifiedAt as ToItem does.
func (a *itemAlloc) time(v []byte) (time.Time, bool) {
	if a.lastTime != nil && string(v) == string(a.lastTime) {
		return a.lastAt, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return time.Time{}, false
	}
	a.lastTime, a.lastAt = v, t
	return t, true
}

// str returns b as a string, one copy per distinct value for the few values interned.
func (a *itemAlloc) str(b []byte) string {
	if v, ok := a.intern[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(a.intern) < 64 {
		a.intern[v] = v
	}
	return v
}

// fastItems is ParseItems' fast path. It declines null (json.Unmarshal gives an empty
// list) and any element that is not an object or lacks a required field (ToItem's
// errors come from the slow path).
func fastItems(data []byte) ([]domain.ItemMetadata, bool) {
	s := fastScan{b: data}
	out, ok := s.items()
	if !ok || !s.end() {
		return nil, false
	}
	return out, true
}

// items decodes the array of item versions that comes next, declining as fastItems does.
func (s *fastScan) items() ([]domain.ItemMetadata, bool) {
	a := itemAlloc{intern: map[string]string{}}
	out := make([]domain.ItemMetadata, 0, min((len(s.b)-s.i)/400+1, 1<<20)) // a typical item renders in 400–450 bytes
	ok := s.array(func() bool {
		out = append(out, domain.ItemMetadata{})
		return s.domainItem(&out[len(out)-1], &a)
	})
	return out, ok
}

// ParseItemsReply decodes a reply whose result is a list of item versions (getChanges,
// getItemVersions) in one pass: what ParseReply and then ParseItems of its result give.
// A reply that carries an error returns it, with no items.
func ParseItemsReply(body []byte) ([]domain.ItemMetadata, *Error, error) {
	if items, ok := fastItemsReply(body); ok {
		return items, nil, nil
	}
	r, err := ParseReply(body)
	switch {
	case err != nil:
		return nil, nil, err
	case r.Error != nil:
		return nil, r.Error, nil
	}
	items, err := ParseItems(r.Result)
	return items, nil, err
}

// fastItemsReply is ParseItemsReply's fast path: fastReply with the result decoded by
// items where it stands instead of passed over first. It declines what fastReply or
// fastItems decline, and a reply with no result or with two.
func fastItemsReply(body []byte) (items []domain.ItemMetadata, ok bool) {
	s := fastScan{b: body}
	seen := false
	ok = s.object(replyKeys, func(key []byte) bool {
		switch string(key) {
		case "result":
			if seen {
				return false
			}
			seen = true
			s.ws()
			items, ok = s.items()
			return ok
		case "error":
			return s.null()
		default: // id
			if s.null() {
				return true
			}
			_, ok := s.rawString()
			return ok
		}
	})
	if !ok || !seen || !s.end() {
		return nil, false
	}
	return items, true
}

// Bits of the fields ToItem requires non-null.
const (
	haveVersion = 1 << iota
	haveStatus
	haveModifiedAt
	haveIsFolder
	haveFilename
	haveRequired = haveVersion | haveStatus | haveModifiedAt | haveIsFolder | haveFilename
)

// domainItem decodes one element into m as ToItem of its encoding/json decoding would.
func (s *fastScan) domainItem(m *domain.ItemMetadata, a *itemAlloc) bool {
	have := 0
	m.Chunks = []string{}
	ok := s.object(itemKeys, func(key []byte) bool {
		switch string(key) {
		case "id", "parentId":
			p := &m.ID
			if key[0] == 'p' {
				p = &m.ParentID
			}
			*p = nil
			if s.null() {
				return true
			}
			v, ok := s.int64()
			*p = a.id(v)
			return ok
		case "tempId", "parentVersion":
			p := &m.TempID
			if key[0] == 'p' {
				p = &m.ParentVersion
			}
			*p = nil
			if s.null() {
				return true
			}
			v, ok := s.int64()
			*p = a.int(v)
			return ok
		case "deviceId":
			return s.uuidField(&m.DeviceID)
		case "workspaceId":
			return s.uuidField(&m.WorkspaceID)
		case "version":
			return s.requiredInt(&m.Version, &have, haveVersion)
		case "status", "filename", "mimetype":
			return s.itemString(key, m, &have, a)
		case "modifiedAt":
			have |= haveModifiedAt
			v, ok := s.rawString()
			if !ok {
				return false
			}
			m.ModifiedAt, ok = a.time(v)
			return ok
		case "checksum":
			return s.nullableInt(&m.Checksum)
		case "size":
			return s.nullableInt(&m.Size)
		case "chunks":
			return s.itemChunks(m, a)
		default: // isFolder
			var b *bool
			if !s.optBool(&b) || b == nil {
				return false
			}
			have |= haveIsFolder
			m.IsFolder = *b
			return true
		}
	})
	return ok && have == haveRequired
}

// itemChunks decodes a chunk list; null is an empty list, as ToItem makes it.
func (s *fastScan) itemChunks(m *domain.ItemMetadata, a *itemAlloc) bool {
	m.Chunks = []string{}
	if s.null() {
		return true
	}
	list := a.scratch[:0]
	ok := s.array(func() bool {
		v, ok := s.str()
		list = append(list, v)
		return ok
	})
	a.scratch = list
	if ok && len(list) > 0 {
		m.Chunks = a.chunks(list)
	}
	return ok
}

// requiredInt decodes an integer that may not be null, and sets bit in have.
func (s *fastScan) requiredInt(dst *int64, have *int, bit int) bool {
	v, ok := s.int64()
	*dst = v
	*have |= bit
	return ok
}

// nullableInt decodes an integer or null (0).
func (s *fastScan) nullableInt(dst *int64) bool {
	if s.null() {
		*dst = 0
		return true
	}
	v, ok := s.int64()
	*dst = v
	return ok
}

// uuidField decodes a UUID or null (the nil UUID), as ToItem does.
func (s *fastScan) uuidField(dst *uuid.UUID) bool {
	if s.null() {
		*dst = uuid.Nil
		return true
	}
	v, ok := s.rawString()
	if !ok {
		return false
	}
	id, err := uuid.ParseBytes(v)
	*dst = id
	return err == nil
}

// itemString decodes status and filename (required) or mimetype (null is "").
func (s *fastScan) itemString(key []byte, m *domain.ItemMetadata, have *int, a *itemAlloc) bool {
	if s.null() {
		m.Mimetype = ""
		return key[0] == 'm'
	}
	v, ok := s.rawString()
	if !ok {
		return false
	}
	switch key[0] {
	case 's':
		*have |= haveStatus
		m.Status = domain.Status(a.str(v))
	case 'f':
		*have |= haveFilename
		m.Filename = string(v)
	default:
		m.Mimetype = a.str(v)
	}
	return true
}
