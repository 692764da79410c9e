package wire

import (
	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/jsontext"
)

// AppendCommitRequest appends a device's commit request envelope, byte for byte what
// json.Marshal gives for {"method": "commit", "params": [{requestId, userId,
// workspaceId, deviceId, items: FromItems(items)}], "id": id, "async": true} built of
// maps (keys in order), without reflection: the Go client sends every commit with it.
func AppendCommitRequest(dst []byte, id, requestID string, user, workspace, device uuid.UUID, items []domain.ItemMetadata) []byte {
	dst = append(dst, `{"async":true,"id":`...)
	dst = jsontext.AppendString(dst, id)
	dst = append(dst, `,"method":"commit","params":[{"deviceId":`...)
	dst = jsontext.AppendUUID(dst, device)
	dst = append(dst, `,"items":[`...)
	for i := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendItem(dst, &items[i])
	}
	dst = append(dst, `],"requestId":`...)
	dst = jsontext.AppendString(dst, requestID)
	dst = append(dst, `,"userId":`...)
	dst = jsontext.AppendUUID(dst, user)
	dst = append(dst, `,"workspaceId":`...)
	dst = jsontext.AppendUUID(dst, workspace)
	return append(dst, `}]}`...)
}
