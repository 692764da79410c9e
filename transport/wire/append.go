package wire

import (
	"time"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/jsontext"
)

// AppendItem appends the JSON of an item version, byte for byte what json.Marshal gives
// for FromItem(*m), without building the wire struct: the streamed getChanges renders
// every row of a workspace with it. It keeps no reference to m.
func AppendItem(dst []byte, m *domain.ItemMetadata) []byte { return appendItem(dst, m, false) }

// appendItem is AppendItem; with nullChunks a nil Chunks is rendered null rather than
// [] (a failed CommitInfo's metadata, as FromCommitted renders it).
func appendItem(dst []byte, m *domain.ItemMetadata, nullChunks bool) []byte {
	dst, _ = domain.AppendItemJSON(dst, m, appendQuotedTime, nullChunks)
	return dst
}

// appendQuotedTime appends t as FormatTime renders it, in quotes; it never fails.
func appendQuotedTime(dst []byte, t time.Time) ([]byte, bool) {
	dst = append(dst, '"')
	dst = appendTime(dst, t)
	return append(dst, '"'), true
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
	dst = jsontext.AppendString(dst, id)
	return append(dst, rawResponseEnd...)
}

const rawResponseEnd = `,"idOmq":"` + IDOmq + `"}`

// RawResponseSize returns the length of AppendRawResponse's response.
func RawResponseSize(id string, result ...[]byte) int {
	n := len(`{"result":,"id":`) + len(jsontext.AppendString(nil, id)) + len(rawResponseEnd)
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
