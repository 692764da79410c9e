package domain

import (
	"time"

	"github.com/google/uuid"
)

// The events of a share (PROTOCOL.md §8). A share that creates a shared workspace S from
// folder F of the owner's personal workspace W appends, atomically, ItemsMovedOut to W
// and WorkspaceCreated, ItemsMovedIn and one MemberAdded per member to S.

// Released type names of the share events. Never change one.
const (
	TypeItemsMovedOut = "ItemsMovedOut.v1"
	TypeItemsMovedIn  = "ItemsMovedIn.v1"
)

// ItemsMovedOut records, in the source workspace W, that the items below folder F moved
// to the shared workspace S: it takes W's next WorkspaceVersion (a device sees it as a
// notifyCommit with no items and movedOut), removes the items from W, and makes F the
// mount point of S in W. RequestID is the share's; a repeated share request finds it.
type ItemsMovedOut struct {
	PrevHash         string    `json:"prevHash"`
	WorkspaceID      uuid.UUID `json:"workspaceId"`
	WorkspaceVersion int64     `json:"workspaceVersion"`
	RequestID        string    `json:"requestId"`
	UserID           uuid.UUID `json:"userId"`
	At               time.Time `json:"at"`
	// ToWorkspaceID is S; FolderID is F, which stays in W.
	ToWorkspaceID uuid.UUID `json:"toWorkspaceId"`
	FolderID      ItemID    `json:"folderId"`
	// ItemIDs are the moved items, every item below F (deleted ones included), parents
	// before children.
	ItemIDs []ItemID `json:"itemIds"`
	// LimitQuota and UsedQuota are the owner's (unchanged by a share) as far as the
	// command knew; WorkspaceUsed is W's live bytes after the move.
	LimitQuota    int64 `json:"limitQuota"`
	UsedQuota     int64 `json:"usedQuota"`
	WorkspaceUsed int64 `json:"workspaceUsed"`
	// Part and Parts split a move whose ids exceed one event (Limits.MaxEventBytes):
	// Parts events (Part 0, 1, …), adjacent in W's stream and appended in the same
	// atomic append, each with a slice of ItemIDs and the same other fields. Only Part 0
	// takes the workspaceVersion (the others repeat it) and is what a repeated share
	// request finds. A move in one event has both 0 (omitted).
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
}

// MovedItem is one moved item with its whole history, oldest version first.
type MovedItem struct {
	ID       ItemID         `json:"id"`
	Versions []ItemMetadata `json:"versions"`
}

// ItemsMovedIn records, in the new shared workspace S, the items that moved in from W,
// right after S's WorkspaceCreated: it is S's WorkspaceVersion 1. Every item keeps its
// id, versions and content; in every version WorkspaceID is S, and a ParentID equal to
// F (with its ParentVersion) is null, F's children being at S's root. It also makes F
// the owner's mount point of S.
type ItemsMovedIn struct {
	PrevHash         string    `json:"prevHash"`
	WorkspaceID      uuid.UUID `json:"workspaceId"`
	WorkspaceVersion int64     `json:"workspaceVersion"`
	RequestID        string    `json:"requestId"`
	UserID           uuid.UUID `json:"userId"`
	At               time.Time `json:"at"`
	FromWorkspaceID  uuid.UUID `json:"fromWorkspaceId"`
	FolderID         ItemID    `json:"folderId"`
	// Items, parents before children, as ItemsMovedOut.ItemIDs.
	Items         []MovedItem `json:"items"`
	LimitQuota    int64       `json:"limitQuota"`
	UsedQuota     int64       `json:"usedQuota"`
	WorkspaceUsed int64       `json:"workspaceUsed"`
	// Part and Parts split a move whose history exceeds one event, as in ItemsMovedOut:
	// Parts events right after WorkspaceCreated, each with a slice of Items; an item's
	// versions may continue in the next part (the same id again, its next versions).
	// Only Part 0 takes workspaceVersion 1; WorkspaceUsed is the whole move's in each.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
}

func (e ItemsMovedOut) EventType() string { return TypeItemsMovedOut }
func (e ItemsMovedIn) EventType() string  { return TypeItemsMovedIn }
func (e ItemsMovedOut) Prev() string      { return e.PrevHash }
func (e ItemsMovedIn) Prev() string       { return e.PrevHash }
