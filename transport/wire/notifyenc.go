package wire

import (
	"strconv"

	"github.com/stacksync-es/syncservice/domain"

	"github.com/stacksync-es/syncservice/domain/jsontext"
)

// AppendNotifyCommit appends the notifyCommit event of a recorded commit, byte for byte
// what json.Marshal gives for Event{Method: MethodNotifyCommit, Params:
// []CommitNotification{FromCommitted(*c)}, ID: eventID, Async: true}, without the wire
// structs and without reflection: every commit's notification is rendered here, on the
// commit path. It keeps no reference to c.
func AppendNotifyCommit(dst []byte, eventID string, c *domain.Committed) []byte {
	dst = append(dst, `{"method":"notifyCommit","params":[{"requestId":`...)
	dst = jsontext.AppendString(dst, c.RequestID)
	dst = append(dst, `,"items":[`...)
	for i := range c.Items {
		o := &c.Items[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"committedVersion":`...)
		dst = strconv.AppendInt(dst, o.CommittedVersion, 10)
		dst = append(dst, `,"commitSucceed":`...)
		dst = strconv.AppendBool(dst, o.Succeeded)
		dst = append(dst, `,"metadata":`...)
		if o.Metadata != nil {
			dst = appendItem(dst, o.Metadata, !o.Succeeded)
		} else {
			dst = append(dst, "null"...)
		}
		if o.Reason != "" {
			dst = append(dst, `,"reason":`...)
			dst = jsontext.AppendString(dst, string(o.Reason))
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"limitQuota":`...)
	dst = strconv.AppendInt(dst, c.LimitQuota, 10)
	dst = append(dst, `,"usedQuota":`...)
	dst = strconv.AppendInt(dst, c.UsedQuota, 10)
	dst = append(dst, `,"workspaceId":`...)
	dst = jsontext.AppendUUID(dst, c.WorkspaceID)
	dst = append(dst, `,"userId":`...)
	dst = jsontext.AppendUUID(dst, c.UserID)
	dst = append(dst, `,"deviceId":`...)
	dst = jsontext.AppendUUID(dst, c.DeviceID)
	dst = append(dst, `,"committedAt":"`...)
	dst = appendTime(dst, c.CommittedAt)
	dst = append(dst, `","workspaceVersion":`...)
	dst = strconv.AppendInt(dst, c.WorkspaceVersion, 10)
	dst = append(dst, `}],"id":`...)
	dst = jsontext.AppendString(dst, eventID)
	return append(dst, `,"async":true}`...)
}

// notifyCommitSize is a capacity for c's notification that is usually enough: a fixed
// part and about what an item version takes, plus its strings.
func notifyCommitSize(c *domain.Committed) int {
	n := 400 + len(c.RequestID)
	for i := range c.Items {
		n += 420
		if m := c.Items[i].Metadata; m != nil {
			n += len(m.Filename) + len(m.Mimetype)
			for _, ch := range m.Chunks {
				n += len(ch) + 3
			}
		}
	}
	return n
}

// appendVoidResponse appends the success response to request id of a method without a
// result, byte for byte what EncodeResponse's json.Marshal gives for it.
func appendVoidResponse(dst []byte, id string) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsontext.AppendString(dst, id)
	return append(dst, `,"idOmq":"`+IDOmq+`"}`...)
}
