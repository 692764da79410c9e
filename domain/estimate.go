package domain

import (
	"encoding/json"
	"time"
)

// The size estimate of a Committed event lets decideCommit refuse a commit whose event
// would exceed Limits.MaxEventBytes while it decides, before anything large is built
// or encoded. It is cheap arithmetic over string lengths and an upper bound of the
// encoded size for valid UTF-8 (every string of a decided event is): each fixed part
// (keys, punctuation, ids, booleans, times) is measured once from encoding/json itself;
// numbers and strings are counted per value.

var (
	// itemFixedBytes is an ItemMetadata with zero numbers, null pointers and chunk
	// list, empty strings and the widest time, less those zeros, nulls and empty strings.
	itemFixedBytes = encodedLen(ItemMetadata{ModifiedAt: widestTime}) - 4*len("null") - 3*len("0") - 3*len(`""`) - len("null")
	// outcomeFixedBytes is an ItemOutcome with a zero version and null metadata, less
	// those; a reason is added apart.
	outcomeFixedBytes = encodedLen(ItemOutcome{}) - len("0") - len("null")
	// committedFixedBytes is a Committed event with the widest numbers and time, empty
	// strings and no items.
	committedFixedBytes = encodedLen(Committed{WorkspaceVersion: minInt64, CommittedAt: widestTime, Items: []ItemOutcome{},
		LimitQuota: minInt64, UsedQuota: minInt64, WorkspaceUsed: minInt64})
)

const minInt64 = -1 << 63

// widestTime is the longest time a decided event holds (UTC, milliseconds).
var widestTime = time.Date(9999, 12, 31, 23, 59, 59, 999000000, time.UTC)

func encodedLen(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		panic("domain: measuring a fixed event part: " + err.Error())
	}
	return len(b)
}

// intLen is the length of n in decimal.
func intLen(n int64) int {
	if n == minInt64 {
		return len("-9223372036854775808")
	}
	l := 1
	if n < 0 {
		l, n = 2, -n
	}
	for ; n >= 10; n /= 10 {
		l++
	}
	return l
}

func ptrLen[T ~int64](p *T) int {
	if p == nil {
		return len("null")
	}
	return intLen(int64(*p))
}

// jsonStringLen is the length of s as a JSON string (quotes included) as encoding/json
// writes it, for valid UTF-8 (\b and \f, written short by newer Go releases, are counted
// as the long \u00XX form).
func jsonStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 5
		case c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8:
			n += 3 // U+2028 and U+2029 are written as \u2028 and \u2029
			i += 2
		}
	}
	return n
}

// estimateItem bounds the encoded size of m (nil: null).
func estimateItem(m *ItemMetadata) int {
	if m == nil {
		return len("null")
	}
	n := itemFixedBytes + ptrLen(m.ID) + ptrLen(m.TempID) + ptrLen(m.ParentID) + ptrLen(m.ParentVersion) +
		intLen(m.Version) + intLen(m.Checksum) + intLen(m.Size) +
		jsonStringLen(string(m.Status)) + jsonStringLen(m.Filename) + jsonStringLen(m.Mimetype)
	if m.Chunks == nil {
		return n + len("null")
	}
	n += len("[]")
	for _, c := range m.Chunks {
		n += jsonStringLen(c) + 1 // with its comma
	}
	return n
}

// estimateOutcome bounds the encoded size of o in an event's item list (with its comma).
func estimateOutcome(o *ItemOutcome) int {
	n := outcomeFixedBytes + intLen(o.CommittedVersion) + estimateItem(o.Metadata) + 1
	if o.Reason != "" {
		n += len(`,"reason":`) + jsonStringLen(string(o.Reason))
	}
	return n
}

// estimateCommitted bounds the encoded size of a Committed event of c without its items.
func estimateCommitted(c *Commit) int {
	return committedFixedBytes + jsonStringLen(c.PrevHash) + jsonStringLen(c.RequestID)
}
