package projections

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// decodeCommitted decodes a Committed event's stored JSON without reflection: the bulk
// of every history, and about half of a replay's CPU through domain.Decode. It accepts
// only what it can decode exactly as domain.Decode would (json.Marshal's output and
// anything as plain: known keys spelled exactly, each once, values of the field's JSON
// type, nulls only where the field is a pointer or a slice). Anything else returns
// ok=false and the caller asks domain.Decode, which decides (and may fail): so when ok,
// the result is the one domain.Decode returns, and live and rebuilt models stay equal.
// The leaf values go through the same functions encoding/json calls (uuid's
// UnmarshalText, time's UnmarshalJSON, strconv.ParseInt, json.Unmarshal for strings
// with escapes).
func decodeCommitted(data []byte) (e domain.Committed, ok bool) {
	s := scanner{b: data}
	var seen uint16
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "prevHash":
			return once(&seen, 0) && s.str(&e.PrevHash)
		case "workspaceId":
			return once(&seen, 1) && s.uuid(&e.WorkspaceID)
		case "workspaceVersion":
			return once(&seen, 2) && s.int(&e.WorkspaceVersion)
		case "requestId":
			return once(&seen, 3) && s.str(&e.RequestID)
		case "userId":
			return once(&seen, 4) && s.uuid(&e.UserID)
		case "deviceId":
			return once(&seen, 5) && s.uuid(&e.DeviceID)
		case "committedAt":
			return once(&seen, 6) && s.time(&e.CommittedAt)
		case "items":
			return once(&seen, 7) && s.outcomes(&e.Items)
		case "limitQuota":
			return once(&seen, 8) && s.int(&e.LimitQuota)
		case "usedQuota":
			return once(&seen, 9) && s.int(&e.UsedQuota)
		case "workspaceUsed":
			return once(&seen, 10) && s.int(&e.WorkspaceUsed)
		}
		return false // unknown, or a case variant encoding/json would fold onto a field
	})
	if !ok || !s.end() {
		return domain.Committed{}, false
	}
	return e, true
}

// once marks field bit as seen; false if it was already (a duplicate key, which
// encoding/json merges into the earlier value).
func once(seen *uint16, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		return false
	}
	*seen |= 1 << bit
	return true
}

func (s *scanner) outcomes(out *[]domain.ItemOutcome) bool {
	if s.null() {
		*out = nil
		return true
	}
	items := make([]domain.ItemOutcome, 0, 4)
	ok := s.array(func() bool {
		var o domain.ItemOutcome
		var seen uint16
		if !s.object(func(key []byte) bool {
			switch string(key) {
			case "committedVersion":
				return once(&seen, 0) && s.int(&o.CommittedVersion)
			case "commitSucceed":
				return once(&seen, 1) && s.bool(&o.Succeeded)
			case "stored":
				return once(&seen, 2) && s.bool(&o.Stored)
			case "metadata":
				return once(&seen, 3) && s.metadata(&o.Metadata)
			case "reason":
				var r string
				ok := once(&seen, 4) && s.str(&r)
				o.Reason = domain.Reason(r)
				return ok
			}
			return false
		}) {
			return false
		}
		items = append(items, o)
		return true
	})
	*out = items
	return ok
}

func (s *scanner) metadata(out **domain.ItemMetadata) bool {
	if s.null() {
		*out = nil
		return true
	}
	// One allocation for the metadata and the integers its pointers point to.
	a := &struct {
		md           domain.ItemMetadata
		id, parent   domain.ItemID
		temp, parVer int64
	}{}
	md := &a.md
	var seen uint16
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			return once(&seen, 0) && intPtr(s, &md.ID, &a.id)
		case "tempId":
			return once(&seen, 1) && intPtr(s, &md.TempID, &a.temp)
		case "version":
			return once(&seen, 2) && s.int(&md.Version)
		case "deviceId":
			return once(&seen, 3) && s.uuid(&md.DeviceID)
		case "workspaceId":
			return once(&seen, 4) && s.uuid(&md.WorkspaceID)
		case "parentId":
			return once(&seen, 5) && intPtr(s, &md.ParentID, &a.parent)
		case "parentVersion":
			return once(&seen, 6) && intPtr(s, &md.ParentVersion, &a.parVer)
		case "status":
			return once(&seen, 7) && s.status(&md.Status)
		case "modifiedAt":
			return once(&seen, 8) && s.time(&md.ModifiedAt)
		case "checksum":
			return once(&seen, 9) && s.int(&md.Checksum)
		case "chunks":
			return once(&seen, 10) && s.strs(&md.Chunks)
		case "size":
			return once(&seen, 11) && s.int(&md.Size)
		case "isFolder":
			return once(&seen, 12) && s.bool(&md.IsFolder)
		case "filename":
			return once(&seen, 13) && s.str(&md.Filename)
		case "mimetype":
			return once(&seen, 14) && s.str(&md.Mimetype)
		}
		return false
	})
	*out = md
	return ok
}

func (s *scanner) strs(out *[]string) bool {
	if s.null() {
		*out = nil
		return true
	}
	strs := make([]string, 0, 2)
	ok := s.array(func() bool {
		var v string
		if !s.str(&v) {
			return false
		}
		strs = append(strs, v)
		return true
	})
	*out = strs
	return ok
}

// intPtr decodes null as nil and an integer into *store, pointing out at it.
func intPtr[T ~int64](s *scanner, out **T, store *T) bool {
	if s.null() {
		*out = nil
		return true
	}
	var v int64
	if !s.int(&v) {
		return false
	}
	*store = T(v)
	*out = store
	return true
}

// scanner reads one JSON value from b; every method returns false (position then
// undefined) when the input is not of the form it accepts.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c (after white space) if it is next.
func (s *scanner) eat(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

func (s *scanner) null() bool {
	s.skipSpace()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// object reads an object, calling field with each key (no escapes) positioned on its value.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, _, escaped, ok := s.rawString()
		if !ok || escaped || !s.eat(':') || !field(key) {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// array reads an array, calling elem positioned on each element.
func (s *scanner) array(elem func() bool) bool {
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat(']')
	}
}

// rawString reads a string token: its contents, the token with its quotes, and whether
// it holds an escape.
func (s *scanner) rawString() (contents, token []byte, escaped, ok bool) {
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false, false
	}
	start := s.i
	// Most strings hold neither escapes nor control characters: find the closing quote
	// at once and check what it encloses.
	if n := bytes.IndexByte(s.b[start+1:], '"'); n >= 0 {
		end := start + 1 + n
		plain := true
		for _, c := range s.b[start+1 : end] {
			if c < 0x20 || c == '\\' {
				plain = false
				break
			}
		}
		if plain {
			s.i = end + 1
			return s.b[start+1 : end], s.b[start : end+1], false, true
		}
	}
	for j := start + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start+1 : j], s.b[start : j+1], escaped, true
		case c == '\\':
			escaped = true
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, nil, false, false // not JSON
		}
	}
	return nil, nil, false, false
}

func (s *scanner) str(out *string) bool {
	contents, token, escaped, ok := s.rawString()
	if !ok {
		return false
	}
	if !escaped && utf8.Valid(contents) {
		*out = string(contents)
		return true
	}
	// Escapes or invalid UTF-8 (which encoding/json replaces): let it unquote.
	return json.Unmarshal(token, out) == nil
}

// status reads a string, sharing the statuses' constants instead of allocating.
func (s *scanner) status(out *domain.Status) bool {
	contents, _, escaped, ok := s.rawString()
	if !ok || escaped || !utf8.Valid(contents) {
		return false // domain.Decode unquotes or replaces
	}
	switch string(contents) {
	case string(domain.StatusNew):
		*out = domain.StatusNew
	case string(domain.StatusChanged):
		*out = domain.StatusChanged
	case string(domain.StatusRenamed):
		*out = domain.StatusRenamed
	case string(domain.StatusMoved):
		*out = domain.StatusMoved
	case string(domain.StatusDeleted):
		*out = domain.StatusDeleted
	default:
		*out = domain.Status(contents)
	}
	return true
}

func (s *scanner) uuid(out *uuid.UUID) bool {
	contents, _, escaped, ok := s.rawString()
	return ok && !escaped && out.UnmarshalText(contents) == nil
}

func (s *scanner) time(out *time.Time) bool {
	_, token, escaped, ok := s.rawString()
	return ok && !escaped && out.UnmarshalJSON(token) == nil
}

// int reads a JSON integer (no fraction or exponent) that fits an int64.
func (s *scanner) int(out *int64) bool {
	s.skipSpace()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - digits
	if n == 0 || (n > 1 && s.b[digits] == '0') {
		return false // no digits, or a leading zero (not JSON)
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return false
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		return false
	}
	*out = v
	return true
}

func (s *scanner) bool(out *bool) bool {
	s.skipSpace()
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*out, s.i = true, s.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*out, s.i = false, s.i+5
	default:
		return false
	}
	return true
}
