package domain

import (
	"strconv"
	"time"

	"github.com/stacksync-es/syncservice/domain/jsontext"
)

// appendCommitted appends c's stored body, byte for byte what json.Marshal gives for
// it, without reflection: every commit's event is encoded on the commit path (Encode).
// It reports false where json.Marshal would fail (a time json refuses: a year outside
// 0–9999 or a zone offset of a day or more), and Encode then calls json.Marshal for its
// error. FuzzEncodeCommitted holds it to json.Marshal.
func appendCommitted(dst []byte, c *Committed) ([]byte, bool) {
	dst = append(dst, `{"prevHash":`...)
	dst = jsontext.AppendString(dst, c.PrevHash)
	dst = append(dst, `,"workspaceId":`...)
	dst = jsontext.AppendUUID(dst, c.WorkspaceID)
	dst = append(dst, `,"workspaceVersion":`...)
	dst = strconv.AppendInt(dst, c.WorkspaceVersion, 10)
	dst = append(dst, `,"requestId":`...)
	dst = jsontext.AppendString(dst, c.RequestID)
	dst = append(dst, `,"userId":`...)
	dst = jsontext.AppendUUID(dst, c.UserID)
	dst = append(dst, `,"deviceId":`...)
	dst = jsontext.AppendUUID(dst, c.DeviceID)
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
		dst = jsontext.AppendString(dst, string(o.Reason))
	}
	return append(dst, '}'), true
}

func appendMetadata(dst []byte, m *ItemMetadata) ([]byte, bool) {
	return AppendItemJSON(dst, m, appendJSONTime, true)
}

// AppendItemJSON appends m as one JSON object with the protocol's item fields, in the
// order of wire.ItemMetadata (and of the stored events): the one renderer of item
// versions by hand, for the stored Committed events (here) and the wire (package wire's
// AppendItem), which differ only in how modifiedAt is written (appendTime, quotes
// included; false fails the rendering) and whether a nil chunk list is null (nilChunksNull)
// or []. Each caller's tests hold its result byte for byte to json.Marshal of its shape.
func AppendItemJSON(dst []byte, m *ItemMetadata, appendTime func([]byte, time.Time) ([]byte, bool), nilChunksNull bool) ([]byte, bool) {
	dst = append(dst, `{"id":`...)
	dst = jsontext.AppendOptInt(dst, m.ID)
	dst = append(dst, `,"tempId":`...)
	dst = jsontext.AppendOptInt(dst, m.TempID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, m.Version, 10)
	dst = append(dst, `,"deviceId":`...)
	dst = jsontext.AppendUUID(dst, m.DeviceID)
	dst = append(dst, `,"workspaceId":`...)
	dst = jsontext.AppendUUID(dst, m.WorkspaceID)
	dst = append(dst, `,"parentId":`...)
	dst = jsontext.AppendOptInt(dst, m.ParentID)
	dst = append(dst, `,"parentVersion":`...)
	dst = jsontext.AppendOptInt(dst, m.ParentVersion)
	dst = append(dst, `,"status":`...)
	dst = jsontext.AppendString(dst, string(m.Status))
	dst = append(dst, `,"modifiedAt":`...)
	dst, ok := appendTime(dst, m.ModifiedAt)
	if !ok {
		return dst, false
	}
	dst = append(dst, `,"checksum":`...)
	dst = strconv.AppendInt(dst, m.Checksum, 10)
	dst = append(dst, `,"chunks":`...)
	if m.Chunks == nil && nilChunksNull {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, c := range m.Chunks {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsontext.AppendString(dst, c)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"size":`...)
	dst = strconv.AppendInt(dst, m.Size, 10)
	dst = append(dst, `,"isFolder":`...)
	dst = strconv.AppendBool(dst, m.IsFolder)
	dst = append(dst, `,"filename":`...)
	dst = jsontext.AppendString(dst, m.Filename)
	dst = append(dst, `,"mimetype":`...)
	dst = jsontext.AppendString(dst, m.Mimetype)
	return append(dst, '}'), true
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
