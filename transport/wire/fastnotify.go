package wire

// ParseNotifyCommit decodes an event that is a notifyCommit, in one pass and without
// reflection: what a device does with every event it receives. ok is false for
// anything else (another method, a malformed or unusual event); the caller then
// decodes the body with encoding/json as before. What it accepts, it decodes to exactly
// what encoding/json gives for {"method", "params": [CommitNotification]}
// (FuzzParseNotifyCommitMatches); fields it does not know are skipped, as encoding/json
// skips them.
func ParseNotifyCommit(body []byte) (n CommitNotification, ok bool) {
	s := fastScan{b: body}
	var method []byte
	var params int
	ok = s.object(eventKeys, func(key []byte) bool {
		if string(key) == "method" {
			v, ok := s.rawString()
			method = v
			return ok
		}
		return s.array(func() bool { // params
			params++
			return params == 1 && s.notification(&n)
		})
	})
	if !ok || !s.end() || string(method) != MethodNotifyCommit || params != 1 {
		return CommitNotification{}, false
	}
	return n, true
}

// eventKeys are the fields of an event's envelope a device reads.
var eventKeys = []string{"method", "params"}

var notificationKeys = []string{"requestId", "items", "limitQuota", "usedQuota", "workspaceId", "userId", "deviceId",
	"committedAt", "workspaceVersion", "movedOut", "movedIn"}

// notification decodes a CommitNotification object (null is declined).
func (s *fastScan) notification(n *CommitNotification) bool {
	return s.object(notificationKeys, func(key []byte) bool {
		switch string(key) {
		case "requestId":
			return s.plainStr(&n.RequestID)
		case "items":
			return s.commitInfos(&n.Items)
		case "limitQuota":
			return s.plainInt64(&n.LimitQuota)
		case "usedQuota":
			return s.plainInt64(&n.UsedQuota)
		case "workspaceId":
			return s.plainStr(&n.WorkspaceID)
		case "userId":
			return s.plainStr(&n.UserID)
		case "deviceId":
			return s.plainStr(&n.DeviceID)
		case "committedAt":
			return s.plainStr(&n.CommittedAt)
		case "workspaceVersion":
			return s.plainInt64(&n.WorkspaceVersion)
		case "movedOut":
			return s.movedOut(&n.MovedOut)
		default: // movedIn
			return s.movedIn(&n.MovedIn)
		}
	})
}

var commitInfoKeys = []string{"committedVersion", "commitSucceed", "metadata", "reason"}

// commitInfos decodes the items of a notification: an array of objects, or null.
func (s *fastScan) commitInfos(dst *[]CommitInfo) bool {
	if s.null() {
		return true // encoding/json leaves the slice as it was: nil here
	}
	out := []CommitInfo{}
	ok := s.array(func() bool {
		out = append(out, CommitInfo{})
		c := &out[len(out)-1]
		return s.object(commitInfoKeys, func(key []byte) bool {
			switch string(key) {
			case "committedVersion":
				return s.plainInt64(&c.CommittedVersion)
			case "commitSucceed":
				return s.plainBool(&c.CommitSucceed)
			case "metadata":
				if s.null() {
					return true
				}
				c.Metadata = &ItemMetadata{}
				return s.item(c.Metadata)
			default: // reason
				return s.plainStr(&c.Reason)
			}
		})
	})
	*dst = out
	return ok
}

var movedOutKeys = []string{"workspaceId", "folderId", "itemIds"}

// movedOut decodes a notification's movedOut, or null.
func (s *fastScan) movedOut(dst **MovedOut) bool {
	if s.null() {
		return true
	}
	m := &MovedOut{}
	*dst = m
	return s.object(movedOutKeys, func(key []byte) bool {
		switch string(key) {
		case "workspaceId":
			return s.plainStr(&m.WorkspaceID)
		case "folderId":
			return s.plainInt64(&m.FolderID)
		default: // itemIds
			if s.null() {
				return true
			}
			ids := []int64{}
			ok := s.array(func() bool {
				v, ok := s.int64()
				ids = append(ids, v)
				return ok
			})
			m.ItemIDs = ids
			return ok
		}
	})
}

var movedInKeys = []string{"fromWorkspaceId"}

// movedIn decodes a notification's movedIn, or null.
func (s *fastScan) movedIn(dst **MovedIn) bool {
	if s.null() {
		return true
	}
	m := &MovedIn{}
	*dst = m
	return s.object(movedInKeys, func([]byte) bool { return s.plainStr(&m.FromWorkspaceID) })
}

// plainStr decodes a string into a string field; null leaves it as it was, as
// encoding/json does.
func (s *fastScan) plainStr(dst *string) bool {
	if s.null() {
		return true
	}
	v, ok := s.str()
	*dst = v
	return ok
}

// plainInt64 decodes an integer into an int64 field; null leaves it as it was.
func (s *fastScan) plainInt64(dst *int64) bool {
	if s.null() {
		return true
	}
	v, ok := s.int64()
	*dst = v
	return ok
}

// plainBool decodes true or false into a bool field; null leaves it as it was.
func (s *fastScan) plainBool(dst *bool) bool {
	var b *bool
	if !s.optBool(&b) {
		return false
	}
	if b != nil {
		*dst = *b
	}
	return true
}
