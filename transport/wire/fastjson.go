package wire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// fastScan is a forward-only reader of the JSON shapes the hot requests use (the
// envelope and commit's request object: objects, arrays, strings, integers, booleans,
// null). It is the fast path of the request decoders: every method reports false for
// anything it does not handle exactly as encoding/json would (an escape in a string,
// a fraction or exponent where an integer is expected, a key that differs only in case
// from a known one, a repeated key, a nesting deeper than fastMaxDepth, …), and the
// caller then decodes the whole input again through strictObject, which gives
// encoding/json's result or error. So the fast path may decline anything, but what it
// accepts it must decode to exactly encoding/json's value (FuzzFastParseMatches).
type fastScan struct {
	b     []byte
	i     int
	depth int // containers skip is inside
}

// fastMaxDepth bounds the nesting fastScan skips; deeper input goes to encoding/json.
const fastMaxDepth = 64

// ws skips JSON white space.
func (s *fastScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (s *fastScan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// next consumes c, after white space.
func (s *fastScan) next(c byte) bool {
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

// end reports whether only white space is left.
func (s *fastScan) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// null consumes the literal null if it comes next.
func (s *fastScan) null() bool {
	if s.peek() == 'n' && bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// rawString returns the bytes of the string that comes next, without its quotes. It
// declines escapes, control characters and invalid UTF-8 (encoding/json would replace
// those bytes), so the bytes are the string's value.
func (s *fastScan) rawString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	for j+8 <= len(s.b) && plainWord(binary.LittleEndian.Uint64(s.b[j:])) {
		j += 8
	}
	for j < len(s.b) && plainByte[s.b[j]] {
		j++
	}
	ascii := true
	for ; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			s.i = j + 1
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// plainWord reports whether all eight bytes of x are plainByte ones, eight at a time
// (the test for a zero byte of "Bit Twiddling Hacks", applied to x^'"', x^'\\' and to
// x-0x20 for the control bytes; x's high bits for the non-ASCII ones). A string's bytes
// are passed a word at a time up to the first word holding anything else.
func plainWord(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, b := x^(lo*'"'), x^(lo*'\\')
	return ((q-lo)&^q|(b-lo)&^b|(x-lo*0x20)|x)&hi == 0
}

// plainByte marks the bytes a string may hold with no further check: printable ASCII
// other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str decodes the string that comes next.
func (s *fastScan) str() (string, bool) {
	v, ok := s.rawString()
	return string(v), ok
}

// optStr decodes a string or null into a *string.
func (s *fastScan) optStr(dst **string) bool {
	if s.null() {
		*dst = nil
		return true
	}
	v, ok := s.str()
	if !ok {
		return false
	}
	*dst = &v
	return true
}

// int64 decodes an integer (no fraction, no exponent) that fits an int64.
func (s *fastScan) int64() (int64, bool) {
	s.ws()
	j, neg := s.i, false
	if j < len(s.b) && s.b[j] == '-' {
		neg, j = true, j+1
	}
	start := j
	var u uint64
	for ; j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9'; j++ {
		if u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(s.b[j]-'0')
		if u > 1<<63 {
			return 0, false
		}
	}
	switch {
	case j == start, s.b[start] == '0' && j-start > 1, !neg && u == 1<<63:
		return 0, false
	case j < len(s.b) && (s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E'):
		return 0, false
	}
	s.i = j
	if neg {
		return -int64(u), true //nolint:gosec // u ≤ 2^63, and -(2^63) wraps to itself
	}
	return int64(u), true
}

// optInt64 decodes an integer or null into a *int64.
func (s *fastScan) optInt64(dst **int64) bool {
	if s.null() {
		*dst = nil
		return true
	}
	v, ok := s.int64()
	if !ok {
		return false
	}
	*dst = &v
	return true
}

// optBool decodes true, false or null into a *bool.
func (s *fastScan) optBool(dst **bool) bool {
	s.ws()
	switch {
	case s.null():
		*dst = nil
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		s.i += 4
		v := true
		*dst = &v
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		s.i += 5
		v := false
		*dst = &v
	default:
		return false
	}
	return true
}

// object calls field for each key of the object that comes next, with the scanner
// at the key's value; field consumes the value. keys are the fields the caller knows:
// a key that matches none exactly but one of them case-insensitively (encoding/json
// would decode it into that field) is declined, as is a key seen twice (encoding/json
// keeps the last) and a key with a non-ASCII byte (encoding/json folds some of those
// onto ASCII letters). Any other key's value is skipped.
func (s *fastScan) object(keys []string, field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	var seen uint64 // bit i: keys[i] seen
	next := 0       // the index of the key after the last one known: senders keep an order
	for {
		key, ok := s.rawString()
		if !ok || !s.next(':') {
			return false
		}
		k := -1
		if next < len(keys) && string(key) == keys[next] {
			k = next
		} else {
			k = knownKey(keys, key)
		}
		if k >= 0 {
			next = k + 1
		}
		switch {
		case k >= 0 && seen&(1<<k) != 0:
			return false
		case k >= 0:
			seen |= 1 << k
			if !field(key) {
				return false
			}
		case k == -2:
			return false
		default:
			if !s.skip() {
				return false
			}
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// knownKey returns the index of key in keys, -1 if it matches none, or -2 if it is
// not plain ASCII or matches one of them only case-insensitively.
func knownKey(keys []string, key []byte) int {
	for i, k := range keys {
		if string(key) == k {
			return i
		}
	}
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return -2
		}
	}
	for _, k := range keys {
		if strings.EqualFold(string(key), k) {
			return -2
		}
	}
	return -1
}

// array calls elem for each element of the array that comes next, with the scanner
// at the element.
func (s *fastScan) array(elem func() bool) bool {
	if !s.next('[') {
		return false
	}
	if s.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// skip consumes one JSON value of any kind, checking its syntax.
func (s *fastScan) skip() bool {
	switch c := s.peek(); {
	case c == '{' || c == '[':
		if s.depth++; s.depth > fastMaxDepth {
			return false
		}
		defer func() { s.depth-- }()
		if c == '{' {
			return s.object(nil, nil)
		}
		return s.array(s.skip)
	case c == '"':
		_, ok := s.rawString()
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.null()
	}
	return false
}

func (s *fastScan) literal(w string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		s.i += len(w)
		return true
	}
	return false
}

// number consumes a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *fastScan) number() bool {
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	digits := func() int {
		n := 0
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j, n = j+1, n+1
		}
		return n
	}
	first := j
	if n := digits(); n == 0 || (n > 1 && s.b[first] == '0') {
		return false
	}
	if j < len(s.b) && s.b[j] == '.' {
		j++
		if digits() == 0 {
			return false
		}
	}
	if j < len(s.b) && (s.b[j] == 'e' || s.b[j] == 'E') {
		j++
		if j < len(s.b) && (s.b[j] == '+' || s.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return false
		}
	}
	s.i = j
	return true
}
