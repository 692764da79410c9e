package domain

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// The size estimate of a Committed event lets decideCommit refuse a commit whose event
// would exceed Limits.MaxEventBytes while it decides, before anything large is built
// or encoded. It is cheap arithmetic over string lengths and an upper bound of the
// encoded size for valid UTF-8 (every string of a decided event is): each fixed part is
// measured once, with the widest numbers, times and ids, from encoding/json itself.

var (
	// itemFixedBytes is an ItemMetadata with empty strings and a null chunk list.
	itemFixedBytes = encodedLen(widestItem())
	// outcomeFixedBytes is an ItemOutcome with null metadata and the longest reason.
	outcomeFixedBytes = encodedLen(ItemOutcome{CommittedVersion: minInt64, Reason: ReasonParentNotFolder})
	// committedFixedBytes is a Committed event with empty strings and no items.
	committedFixedBytes = encodedLen(Committed{WorkspaceVersion: minInt64, CommittedAt: widestTime, Items: []ItemOutcome{},
		LimitQuota: minInt64, UsedQuota: minInt64, WorkspaceUsed: minInt64})
)

const minInt64 = -1 << 63

var widestTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)

func widestItem() ItemMetadata {
	n := ItemID(minInt64)
	v := int64(minInt64)
	return ItemMetadata{ID: &n, TempID: &v, Version: v, DeviceID: uuid.Nil, WorkspaceID: uuid.Nil, ParentID: &n,
		ParentVersion: &v, ModifiedAt: widestTime, Checksum: v, Size: v, IsFolder: false}
}

func encodedLen(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		panic("domain: measuring a fixed event part: " + err.Error())
	}
	return len(b)
}

// jsonStringLen is the length of s as a JSON string (quotes included) as encoding/json
// writes it, for valid UTF-8; short escapes are counted as the long \u00XX form.
func jsonStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
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
	n := itemFixedBytes + jsonStringLen(string(m.Status)) + jsonStringLen(m.Filename) + jsonStringLen(m.Mimetype)
	for _, c := range m.Chunks {
		n += jsonStringLen(c) + 1 // with its comma
	}
	return n
}

// estimateOutcome bounds the encoded size of o in an event's item list (with its comma).
func estimateOutcome(o *ItemOutcome) int {
	return outcomeFixedBytes + estimateItem(o.Metadata) + 1
}

// estimateCommitted bounds the encoded size of a Committed event of c without its items.
func estimateCommitted(c *Commit) int {
	return committedFixedBytes + jsonStringLen(c.PrevHash) + jsonStringLen(c.RequestID)
}
