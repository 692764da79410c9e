package domain

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// appendCommitted appends c's stored body, byte for byte what json.Marshal gives for
// it, without reflection: every commit's event is encoded on the commit path (Encode).
// It reports false where json.Marshal would fail (a time json refuses: a year outside
// 0–9999 or a zone offset of a day or more), and Encode then calls json.Marshal for its
// error. FuzzEncodeCommitted holds it to json.Marshal.
func appendCommitted(dst []byte, c *Committed) ([]byte, bool) {
	dst = append(dst, `{"prevHash":`...)
	dst = appendJSONString(dst, c.PrevHash)
	dst = append(dst, `,"workspaceId":`...)
	dst = appendJSONUUID(dst, c.WorkspaceID)
	dst = append(dst, `,"workspaceVersion":`...)
	dst = strconv.AppendInt(dst, c.WorkspaceVersion, 10)
	dst = append(dst, `,"requestId":`...)
	dst = appendJSONString(dst, c.RequestID)
	dst = append(dst, `,"userId":`...)
	dst = appendJSONUUID(dst, c.UserID)
	dst = append(dst, `,"deviceId":`...)
	dst = appendJSONUUID(dst, c.DeviceID)
	dst = append(dst, `,"committedAt":`...)
	dst, ok := appendJSONTime(dst, c.CommittedAt)
	if !ok {
		return dst, false
	}
	dst = append(dst, `,"items":`...)
	if c.Items == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range c.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, ok = appendOutcome(dst, &c.Items[i]); !ok {
				return dst, false
			}
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"limitQuota":`...)
	dst = strconv.AppendInt(dst, c.LimitQuota, 10)
	dst = append(dst, `,"usedQuota":`...)
	dst = strconv.AppendInt(dst, c.UsedQuota, 10)
	dst = append(dst, `,"workspaceUsed":`...)
	dst = strconv.AppendInt(dst, c.WorkspaceUsed, 10)
	return append(dst, '}'), true
}

// committedSize is a capacity for c's body that is usually enough: a fixed part and
// what an item version takes, plus its strings.
func committedSize(c *Committed) int {
	n := 400 + len(c.PrevHash) + len(c.RequestID)
	for i := range c.Items {
		n += 100
		if m := c.Items[i].Metadata; m != nil {
			n += 420 + len(m.Status) + len(m.Filename) + len(m.Mimetype)
			for _, ch := range m.Chunks {
				n += len(ch) + 3
			}
		}
	}
	return n
}

func appendOutcome(dst []byte, o *ItemOutcome) ([]byte, bool) {
	dst = append(dst, `{"committedVersion":`...)
	dst = strconv.AppendInt(dst, o.CommittedVersion, 10)
	dst = append(dst, `,"commitSucceed":`...)
	dst = strconv.AppendBool(dst, o.Succeeded)
	dst = append(dst, `,"stored":`...)
	dst = strconv.AppendBool(dst, o.Stored)
	dst = append(dst, `,"metadata":`...)
	if o.Metadata == nil {
		dst = append(dst, "null"...)
	} else {
		var ok bool
		if dst, ok = appendMetadata(dst, o.Metadata); !ok {
			return dst, false
		}
	}
	if o.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendJSONString(dst, string(o.Reason))
	}
	return append(dst, '}'), true
}

func appendMetadata(dst []byte, m *ItemMetadata) ([]byte, bool) {
	dst = append(dst, `{"id":`...)
	dst = appendOptID(dst, m.ID)
	dst = append(dst, `,"tempId":`...)
	dst = appendOptInt64(dst, m.TempID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, m.Version, 10)
	dst = append(dst, `,"deviceId":`...)
	dst = appendJSONUUID(dst, m.DeviceID)
	dst = append(dst, `,"workspaceId":`...)
	dst = appendJSONUUID(dst, m.WorkspaceID)
	dst = append(dst, `,"parentId":`...)
	dst = appendOptID(dst, m.ParentID)
	dst = append(dst, `,"parentVersion":`...)
	dst = appendOptInt64(dst, m.ParentVersion)
	dst = append(dst, `,"status":`...)
	dst = appendJSONString(dst, string(m.Status))
	dst = append(dst, `,"modifiedAt":`...)
	dst, ok := appendJSONTime(dst, m.ModifiedAt)
	if !ok {
		return dst, false
	}
	dst = append(dst, `,"checksum":`...)
	dst = strconv.AppendInt(dst, m.Checksum, 10)
	dst = append(dst, `,"chunks":`...)
	if m.Chunks == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, c := range m.Chunks {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, c)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"size":`...)
	dst = strconv.AppendInt(dst, m.Size, 10)
	dst = append(dst, `,"isFolder":`...)
	dst = strconv.AppendBool(dst, m.IsFolder)
	dst = append(dst, `,"filename":`...)
	dst = appendJSONString(dst, m.Filename)
	dst = append(dst, `,"mimetype":`...)
	dst = appendJSONString(dst, m.Mimetype)
	return append(dst, '}'), true
}

func appendOptID(dst []byte, p *ItemID) []byte {
	if p == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, int64(*p), 10)
}

func appendOptInt64(dst []byte, p *int64) []byte {
	if p == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, *p, 10)
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with nanoseconds,
// in t's own zone), or reports false where MarshalJSON fails.
func appendJSONTime(dst []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return dst, false
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), true
}

// appendJSONUUID appends id as json.Marshal does (its text form, quoted).
func appendJSONUUID(dst []byte, id uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&0xF])
	}
	return append(dst, '"')
}

// appendJSONString appends s as a JSON string escaped as json.Marshal does (HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
