package wire_test

import (
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// The goldens of sharing (PROTOCOL.md §8): a share of folder 4001 (Documents) of the
// personal workspace gWS into the new shared workspace gShared moves 4002 (3 versions)
// and 4003 (a tombstone), then the user events of §8.

// gShareAt is the share's time (with an offset and sub-millisecond digits, as gAt).
var gShareAt = gAt.Add(90 * time.Minute)

// gMovedIn is the ItemsMovedIn of the share: every version re-homed in gShared, the
// folder's children at the root.
func gMovedIn() domain.ItemsMovedIn {
	rehome := func(m domain.ItemMetadata) domain.ItemMetadata {
		m.WorkspaceID = gShared
		if m.ParentID != nil && *m.ParentID == 4001 {
			m.ParentID, m.ParentVersion = nil, nil
		}
		return m
	}
	var file []domain.ItemMetadata
	for v := int64(1); v <= 3; v++ {
		m := gFile()
		m.Version, m.Size = v, 1000*v
		file = append(file, rehome(m))
	}
	return domain.ItemsMovedIn{WorkspaceID: gShared, WorkspaceVersion: 1, RequestID: "share-1", UserID: gUser,
		At: gShareAt, FromWorkspaceID: gWS, FolderID: 4001,
		Items:      []domain.MovedItem{{ID: 4002, Versions: file}, {ID: 4003, Versions: []domain.ItemMetadata{rehome(gDeleted())}}},
		LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 3000}
}

// shareEventCases render the share's events with an envelope id.
func shareEventCases() map[string]func(id string) ([]byte, error) {
	return map[string]func(string) ([]byte, error){
		"notifyCommit-movedOut": func(id string) ([]byte, error) {
			return wire.EncodeNotifyMovedOut(id, domain.ItemsMovedOut{WorkspaceID: gWS, WorkspaceVersion: 18,
				RequestID: "share-1", UserID: gUser, At: gShareAt, ToWorkspaceID: gShared, FolderID: 4001,
				ItemIDs: []domain.ItemID{4002, 4003}, LimitQuota: 1 << 30, UsedQuota: 600000, WorkspaceUsed: 597000})
		},
		"notifyCommit-movedIn": func(id string) ([]byte, error) { return wire.EncodeNotifyMovedIn(id, gMovedIn()) },
		"notifyShareProposal": func(id string) ([]byte, error) {
			return wire.EncodeNotifyShareProposal(id, gShared, "Documents", 4001, gOwner, "Olga Owner", true)
		},
		"notifyUpdateWorkspace": func(id string) ([]byte, error) {
			return wire.EncodeNotifyUpdateWorkspace(id, protocol.UpdateWorkspaceRequest{RequestID: "uw-1", UserID: gUser,
				WorkspaceID: gShared, Name: "From Olga", ParentItemID: iid(4100)})
		},
		"notifyUpdateWorkspace-root": func(id string) ([]byte, error) {
			return wire.EncodeNotifyUpdateWorkspace(id, protocol.UpdateWorkspaceRequest{RequestID: "uw-2", UserID: gUser,
				WorkspaceID: gSecret, Name: "Secret"})
		},
		"notifyUnshare": func(id string) ([]byte, error) { return wire.EncodeNotifyUnshare(id, gSecret) },
	}
}

// shareResponseCases are the getChangesSince pages of a share.
func shareResponseCases() map[string]responseCase {
	return map[string]responseCase{
		// The source workspace's page over the move: movedOut, and no entries in items.
		"getChangesSince-movedOut": {result: wire.FromChangesPage(protocol.ChangesPage{Items: nil, FromVersion: 17,
			ToVersion: 18, HasMore: false, WorkspaceVersion: 18,
			MovedOut: []protocol.MovedOutItem{{ID: 4002, WorkspaceID: gShared}, {ID: 4003, WorkspaceID: gShared}}})},
	}
}

// eventID is the envelope id of a golden event: a UUID derived from the case's name.
func eventID(name string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String() }
