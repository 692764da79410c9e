// Package domain owns the sync service's decision logic: the workspace and user
// aggregates, the commands they accept, the events they record, and the rules of
// PROTOCOL.md §5 that turn one into the other.
//
// It is pure: no I/O, no clock, no randomness, no logging, no context. Time, new ids
// and the hash of the stream's last event arrive on the command. It imports only the
// standard library and google/uuid, and must never import another package of the project.
//
// The core is Decide(state, command) → Decision and a deterministic, total
// Evolve(state, event). Decide never changes the state; the caller appends the decided
// event and folds it with Evolve.
//
// # Decisions where PROTOCOL.md is silent
//
//   - Check order of a Commit: malformed requestId or nil ids (ErrInvalidCommand), then
//     workspace existence (ErrNotFound), then membership (ErrNotMember), then a repeated
//     requestId (ReplayOf, whatever the body), then the body (item count, NewItemIDs,
//     quota figures: ErrInvalidCommand). A requestId is 1–128 characters of valid UTF-8.
//   - Commit and UpdateMemberWorkspace requestIds are deduplicated separately (a replay
//     always points at an event of its own kind), per workspace; RegisterDevice
//     requestIds per user. UpdateDevice is not deduplicated: repeating it is harmless.
//   - The request-local tempId map is filled when an item with a tempId is created or
//     resolved (through that map or through the stored (deviceId, tempId) pairs). Like
//     StackSync, a parentId equal to such a tempId is rewritten. Only version-1 items
//     stored with a tempId enter the (deviceId, tempId) map; the first one wins.
//   - A new item's id is taken from NewItemIDs only when it is accepted, so ids of
//     failed items are not burnt. NewItemIDs must be valid, distinct and unused here.
//   - Per item, failures are checked in this order: the version (rules 2–3), then field
//     ranges (invalidItem), immutableField, invalidName, parentNotFound,
//     parentNotFolder, cycle, quotaExceeded. Every failure of a known item carries its
//     current version; a failure of an unknown or new item carries nil.
//   - A known item at v < 1 is invalidItem. NEW after version 1 acts like CHANGED.
//   - Field ranges: size 0…2^53-1; modifiedAt non-zero, years 1–9999 (JSON-encodable);
//     mimetype ≤ 255 bytes; chunk names 1–255 bytes; at most Limits.MaxChunksPerItem
//     chunks. A folder must have size 0, checksum 0 and no chunks, also when DELETED.
//     Every string of every command that is stored (names, labels, e-mails, requestIds,
//     mimetypes, chunk names) must be valid UTF-8 without U+0000: JSON would silently
//     change invalid UTF-8, so the stored event would differ from the decided one, and
//     PostgreSQL text columns refuse NUL, which would wedge the projectors for good.
//   - Limits (PROTOCOL.md §4) arrive on Commit and RegisterDevice; a zero field is its
//     default (DefaultLimits). A request field out of bounds is ErrInvalidCommand with a
//     message naming the field and the limit, never echoing the value; an item field
//     out of bounds fails the item (invalidItem, invalidName for the filename).
//   - Levels: an item at the root is at level 1, one inside a root folder at level 2.
//     An item is measured when it is placed, that is created or given a new parent; one
//     placed deeper than Limits.MaxFolderDepth fails with invalidItem. A moved folder's
//     subtree is not re-measured, so items below it may end up deeper than the limit;
//     the limit bounds the cost of the walk up the chain, at most MaxFolderDepth steps
//     per placed item, which also makes the cycle check (cycle if the chain meets the
//     item itself) that bounded. Items that keep their parent are not walked again.
//   - A commit request holds 1 to Limits.MaxCommitItems items. While deciding, the size
//     of the Committed event is estimated from the outcomes (an upper bound, counted from
//     string lengths); as soon as it passes Limits.MaxEventBytes the request is refused
//     with ErrEventTooLarge (an ErrInvalidCommand: split it), before the event is built.
//   - A failed item's outcome carries the server's current version without its chunk
//     list (nil, JSON null) when it holds more than MaxFailedOutcomeChunks (1,000), so a
//     small stale request never copies a large stored list; stored versions and
//     accepted outcomes always carry their list.
//   - A DELETED version needs its parent to exist but not to be live (deleting a tree in
//     any order works); any other version needs a live parent, also when CHANGED keeps a
//     parent that has since been deleted (revive the folder first).
//   - ParentVersion is informational and follows the parent: kept from the previous
//     version when the status keeps the parent.
//   - A duplicate (v ≤ s, same content) is compared after the request is normalised as
//     if it were stored on top of stored version v-1; its outcome's Metadata is stored
//     version v (which carries the tempId it was stored with), Stored=false.
//   - Stored versions always carry a non-nil (possibly empty) chunk list.
//   - Quota: an item fails only when it increases usage beyond a set limit; shrinking or
//     deleting is always allowed, even over the limit.
//   - AddMember with an empty name uses the workspace's name. Names of workspaces and
//     members follow the filename rules. UpdateMemberWorkspace accepts any valid item id
//     as mount point (it lies in the member's own workspace, unknown here); the service
//     refuses one that would nest shared workspaces, from its read model.
//   - Commands whose time is outside years 1–9999 are ErrInvalidCommand; a zero time is
//     accepted. Times are stored in UTC, truncated to the millisecond.
//   - CreateUser lower-cases the e-mail, which must contain '@' (≤ 254 bytes); a user's
//     name is a label (≤ 255 bytes). A removed user still exists (CreateUser →
//     ErrAlreadyExists). RegisterDevice with a device id already registered is
//     ErrAlreadyExists.
//   - A user holds at most Limits.MaxDevicesPerUser devices; RegisterDevice beyond is
//     ErrInvalidCommand naming the limit and `syncctl device remove`. A repeated
//     registration requestId answers its first registration even at the cap, and even
//     when that device has since been removed (the device then is unknown: updateDevice
//     answers DeviceNotValid, commit Unauthorized; it registers with a new requestId).
//     RemoveDevice of a device the user does not hold is ErrDeviceNotValid.
//   - StreamVersion counts every event passed to Evolve, also those it cannot apply (an
//     unknown type, another aggregate's id, a second creation, an item version out of
//     sequence), because it is used as the expected version of the next append.
//   - Decide and Evolve accept both values and pointers of commands and events.
//   - Sharing (DecideShare, share_decide.go) decides on two states, the source and the
//     target workspace, and returns events for both streams, to be appended together
//     (eventstore.MultiAppender). The shared workspace's id is SharedWorkspaceID(caller,
//     requestId). A share requestId is remembered per source workspace (apart from
//     commit requestIds); a re-share, which only adds members, records no requestId: a
//     retried one finds everyone a member and decides no event. ItemsMovedOut and
//     ItemsMovedIn each take a workspaceVersion. Moved versions keep their ids, versions
//     and content; their workspaceId becomes the shared workspace's and a parentId equal
//     to the shared folder (with its parentVersion) becomes null. The source keeps the
//     (device, tempId) pairs of moved items, so a retried creation fails with
//     invalidItem instead of making a duplicate. Nested sharing is refused both ways:
//     a folder below a mount point and a folder holding one (the owner's mount points,
//     and ShareFolder.MountPoints, the caller's as a member). A move larger than
//     Limits.MaxEventBytes is split into parts (share_parts.go): only the first part
//     takes a workspaceVersion; a share whose events together exceed
//     Limits.MaxShareBytes, or with one item version too large for an event, is refused
//     (ErrShareTooLarge).
//   - The owner's mount point F of a shared workspace stays in the source and holds
//     nothing there (its content is the shared workspace's): a version placing an item
//     under F (new, moved, or any change of an item already there other than its
//     deletion) fails with parentNotFolder, since F exists and is live (parentNotFound
//     would contradict getChanges listing it) but is no folder of this workspace; F
//     itself may be renamed and moved (where the owner mounts the shared workspace),
//     not deleted (invalidItem), which would leave the shared workspace mounted at a
//     tombstone.
package domain
