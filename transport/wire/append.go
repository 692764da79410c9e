package wire

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// AppendItem appends the JSON of an item version, byte for byte what json.Marshal gives
// for FromItem(*m), without building the wire struct: the streamed getChanges renders
// every row of a workspace with it. It keeps no reference to m.
func AppendItem(dst []byte, m *domain.ItemMetadata) []byte { return appendItem(dst, m, false) }

// appendItem is AppendItem; with nullChunks a nil Chunks is rendered null rather than
// [] (a failed CommitInfo's metadata, as FromCommitted renders it).
func appendItem(dst []byte, m *domain.ItemMetadata, nullChunks bool) []byte {
	dst = append(dst, `{"id":`...)
	if m.ID != nil {
		dst = strconv.AppendInt(dst, int64(*m.ID), 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"tempId":`...)
	dst = appendOptInt(dst, m.TempID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, m.Version, 10)
	dst = append(dst, `,"deviceId":`...)
	dst = appendUUID(dst, m.DeviceID)
	dst = append(dst, `,"workspaceId":`...)
	dst = appendUUID(dst, m.WorkspaceID)
	dst = append(dst, `,"parentId":`...)
	if m.ParentID != nil {
		dst = strconv.AppendInt(dst, int64(*m.ParentID), 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"parentVersion":`...)
	dst = appendOptInt(dst, m.ParentVersion)
	dst = append(dst, `,"status":`...)
	dst = appendString(dst, string(m.Status))
	dst = append(dst, `,"modifiedAt":"`...)
	dst = appendTime(dst, m.ModifiedAt)
	dst = append(dst, `","checksum":`...)
	dst = strconv.AppendInt(dst, m.Checksum, 10)
	if nullChunks && m.Chunks == nil {
		dst = append(dst, `,"chunks":null,"size":`...)
	} else {
		dst = append(dst, `,"chunks":[`...)
		for i, c := range m.Chunks {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, c)
		}
		dst = append(dst, `],"size":`...)
	}
	dst = strconv.AppendInt(dst, m.Size, 10)
	dst = append(dst, `,"isFolder":`...)
	dst = strconv.AppendBool(dst, m.IsFolder)
	dst = append(dst, `,"filename":`...)
	dst = appendString(dst, m.Filename)
	dst = append(dst, `,"mimetype":`...)
	dst = appendString(dst, m.Mimetype)
	return append(dst, '}')
}

// AppendRawResponse appends to dst a success response whose result is already JSON:
// the pieces of result, one after the other, must make one JSON value. It is byte for
// byte what EncodeResponse gives for the decoded result, and AppendRawResult followed by
// AppendResponseEnd. RawResponseSize tells how much it appends.
func AppendRawResponse(dst []byte, id string, result ...[]byte) []byte {
	return AppendResponseEnd(AppendRawResult(dst, result...), id)
}

// AppendRawResult appends the head of a success response, up to the end of its result
// (the pieces of an encoded JSON value): a response's id comes after its result, so
// one head serves the responses to any number of requests (AppendResponseEnd).
func AppendRawResult(dst []byte, result ...[]byte) []byte {
	dst = append(dst, `{"result":`...)
	for _, p := range result {
		dst = append(dst, p...)
	}
	return dst
}

// AppendResponseEnd appends the end of a success response to request id, after the
// head AppendRawResult made.
func AppendResponseEnd(dst []byte, id string) []byte {
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, id)
	return append(dst, rawResponseEnd...)
}

const rawResponseEnd = `,"idOmq":"` + IDOmq + `"}`

// RawResponseSize returns the length of AppendRawResponse's response.
func RawResponseSize(id string, result ...[]byte) int {
	n := len(`{"result":,"id":`) + len(appendString(nil, id)) + len(rawResponseEnd)
	for _, p := range result {
		n += len(p)
	}
	return n
}

// EncodeRawResponse is AppendRawResponse into a buffer of its own.
func EncodeRawResponse(id string, result ...[]byte) []byte {
	return AppendRawResponse(make([]byte, 0, RawResponseSize(id, result...)), id, result...)
}

// appendTime appends t as FormatTime renders it, without its layout parsing.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Truncate(time.Millisecond).AppendFormat(dst, TimeLayout)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, ms, 3)
	return append(dst, 'Z')
}

// appendDigits appends v (0 <= v < 10^width) in width decimal digits.
func appendDigits(dst []byte, v, width int) []byte {
	var b [4]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, b[:width]...)
}

func appendOptInt(dst []byte, p *int64) []byte {
	if p == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, *p, 10)
}

func appendUUID(dst []byte, id uuid.UUID) []byte {
	dst = append(dst, '"')
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xF])
	}
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped as encoding/json does (HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 as U+FFFD).
func appendString(dst []byte, s string) []byte {
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
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
