package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/changeset"
)

// ErrWorkspaceNotFound is returned by the workspace queries for a workspace the read
// model does not hold.
var ErrWorkspaceNotFound = errors.New("projections: workspace not found")

// Paging limits of getChangesSince (PROTOCOL.md §4).
const (
	DefaultChangesLimit = 1000
	MaxChangesLimit     = 10000
)

// Queries answers the service's reads from the live read models. It is safe for
// concurrent use.
type Queries struct {
	pool *pgxpool.Pool
	// PollInterval bounds the sleep between polls of WaitForWorkspaceVersion. Default 20ms.
	PollInterval time.Duration
	// MaxResultBytes bounds the estimated encoded size of a Changes or ItemVersions
	// answer: past it they fail with protocol.ErrResultTooLarge, decided while the rows stream
	// in. Default DefaultMaxResultBytes; set before use.
	MaxResultBytes int64
	// PageBytes is the byte budget of a ChangesSince page: a page ends at the first
	// whole version after which its items' estimated size would pass it (a page still
	// covers at least one version). Default DefaultPageBytes; set before use.
	PageBytes int64
	// MaxDelta bounds the item versions written since a kept answer that EncodedAnswer
	// patches the answer with; past it, it reads every item. Default DefaultMaxDelta.
	MaxDelta int

	streamChunk int // rows per query of EncodedChanges: streamChunk (tests: less)
}

// NewQueries returns Queries over pool (the read models' database).
func NewQueries(pool *pgxpool.Pool) *Queries {
	return &Queries{pool: pool, PollInterval: 20 * time.Millisecond,
		MaxResultBytes: DefaultMaxResultBytes, PageBytes: DefaultPageBytes, streamChunk: streamChunk}
}

// readChunk is how many rows one keyset query of Changes and ItemVersions reads: an
// answer refused as too large stops within a chunk of the limit.
const readChunk = 2000

// readTx runs f in a REPEATABLE READ, READ ONLY transaction: every statement in it sees
// the same snapshot, whatever commits in the meantime.
func (q *Queries) readTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := q.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

const itemSelect = `SELECT item_id, version, ws_version, device_id, parent_id, parent_version,
	temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype`

// itemRow is one item version with the workspace version that stored it.
type itemRow struct {
	md        domain.ItemMetadata
	wsVersion int64
}

// scanItems reads item rows of workspace ws (selected with itemSelect), appending them
// to out; sz (may be nil) counts each one and stops the read when the answer is too
// large.
func scanItems(rows pgx.Rows, ws uuid.UUID, out []itemRow, sz *sizer) ([]itemRow, error) {
	defer rows.Close()
	var device pgtype.UUID // scans without the text round trip of uuid.UUID's sql.Scanner
	for rows.Next() {
		var r itemRow
		var id int64
		var parent *int64
		md := &r.md
		if err := rows.Scan(&id, &md.Version, &r.wsVersion, &device, &parent, &md.ParentVersion,
			&md.TempID, &md.Status, &md.ModifiedAt, &md.Checksum, &md.Chunks, &md.Size, &md.IsFolder,
			&md.Filename, &md.Mimetype); err != nil {
			return nil, err
		}
		md.WorkspaceID, md.DeviceID = ws, device.Bytes
		iid := domain.ItemID(id)
		md.ID = &iid
		if parent != nil {
			p := domain.ItemID(*parent)
			md.ParentID = &p
		}
		if md.Chunks == nil {
			md.Chunks = []string{}
		}
		md.ModifiedAt = md.ModifiedAt.UTC()
		if _, err := sz.add(md); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// workspaceVersion reads the workspace's current version in tx.
func workspaceVersion(ctx context.Context, tx pgx.Tx, ws uuid.UUID) (int64, error) {
	var v int64
	err := tx.QueryRow(ctx, `SELECT version FROM proj_workspaces.workspaces WHERE workspace_id = $1`, ws).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrWorkspaceNotFound
	}
	return v, err
}

// Changes returns the latest version of every item of the workspace, deleted items
// included, parents before children (depth first, siblings by id), and the workspace
// version they describe, all read from one snapshot. It reads the items in keyset
// chunks and fails with protocol.ErrResultTooLarge as soon as their estimated encoded size passes
// MaxResultBytes.
func (q *Queries) Changes(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, int64, error) {
	var items []itemRow
	var version int64
	sz := newSizer(ctx, q.MaxResultBytes)
	err := q.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		if version, err = workspaceVersion(ctx, tx, ws); err != nil {
			return err
		}
		for after := int64(0); ; {
			rows, err := tx.Query(ctx, itemSelect+` FROM proj_workspaces.items
				WHERE workspace_id = $1 AND item_id > $2 ORDER BY item_id LIMIT $3`, ws, after, readChunk)
			if err != nil {
				return err
			}
			n := len(items)
			if items, err = scanItems(rows, ws, items, sz); err != nil {
				return err
			}
			if len(items)-n < readChunk {
				return sz.flush()
			}
			after = int64(*items[len(items)-1].md.ID)
		}
	})
	if err != nil {
		return nil, 0, tooLarge(fmt.Errorf("changes of workspace %s: %w", ws, err))
	}
	return treeOrder(items), version, nil
}

// ChangesSince returns the page of changes after workspace version since: it covers the
// versions (since, ToVersion], holds once each every item changed in that range in its
// state as of ToVersion, deleted items included, parents before children. A page holds
// at most limit items (default 1000, at most 10000), and items of at most PageBytes
// estimated bytes, unless its first version alone has more: a page always covers at
// least one version. HasMore is ToVersion <
// WorkspaceVersion; when it is false, ToVersion is WorkspaceVersion. A since at or past
// the workspace's version gives an empty page with ToVersion = WorkspaceVersion.
// MovedOut lists, by id, the items a share moved out of the workspace within the range
// (PROTOCOL.md §8); they are not in Items, and count against limit as items do.
func (q *Queries) ChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	if since < 0 {
		return protocol.ChangesPage{}, fmt.Errorf("changes of workspace %s since %d: negative version", ws, since)
	}
	if limit <= 0 {
		limit = DefaultChangesLimit
	}
	limit = min(limit, MaxChangesLimit)
	page := protocol.ChangesPage{FromVersion: since}
	var items []itemRow
	err := q.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		if page.WorkspaceVersion, err = workspaceVersion(ctx, tx, ws); err != nil {
			return err
		}
		page.ToVersion = page.WorkspaceVersion
		if since >= page.WorkspaceVersion {
			return nil
		}
		ids, versions, to, err := pageRange(ctx, tx, ws, since, page.WorkspaceVersion, limit, q.PageBytes)
		if err != nil {
			return err
		}
		page.ToVersion = to
		if ids, versions, page.MovedOut, err = movedOutOf(ctx, tx, ws, ids, versions); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// Each item's state as of to is its latest version in the page's range: one
		// primary-key lookup per item.
		rows, err := tx.Query(ctx, itemSelect+`
			FROM unnest($2::bigint[], $3::bigint[]) AS k(item_id, version)
			JOIN proj_workspaces.item_history h USING (item_id, version)
			WHERE h.workspace_id = $1`, ws, ids, versions)
		if err != nil {
			return err
		}
		sz := newSizer(ctx, 0) // bounded by the page walk; counted against the request's memory
		if items, err = scanItems(rows, ws, nil, sz); err != nil {
			return err
		}
		return sz.flush()
	})
	if err != nil {
		return protocol.ChangesPage{}, fmt.Errorf("changes of workspace %s since %d: %w", ws, since, err)
	}
	page.HasMore = page.ToVersion < page.WorkspaceVersion
	page.Items = treeOrder(items)
	return page, nil
}

// movedOutOf splits the moved-out items (version 0) off a page range's ids and versions,
// with the workspaces they moved to, by ascending id.
func movedOutOf(ctx context.Context, tx pgx.Tx, ws uuid.UUID, ids, versions []int64) ([]int64, []int64, []protocol.MovedOutItem, error) {
	var moved []int64
	keptIDs, keptVersions := ids[:0], versions[:0]
	for i, id := range ids {
		if versions[i] == 0 {
			moved = append(moved, id)
			continue
		}
		keptIDs, keptVersions = append(keptIDs, id), append(keptVersions, versions[i])
	}
	if len(moved) == 0 {
		return keptIDs, keptVersions, nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT item_id, to_workspace_id FROM proj_workspaces.moved_out
		WHERE workspace_id = $1 AND item_id = ANY($2) ORDER BY item_id`, ws, moved)
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (protocol.MovedOutItem, error) {
		var m protocol.MovedOutItem
		var id int64
		err := r.Scan(&id, &m.WorkspaceID)
		m.ID = domain.ItemID(id)
		return m, err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("moved-out items: %w", err)
	}
	return keptIDs, keptVersions, out, nil
}

// treeOrder orders items parents before children: depth first from the roots (items
// whose parent is null or not among items), siblings by id; items on a parent cycle,
// which the domain never stores, come last by id rather than being lost. It is
// changeset.Order, the order of the encoded answers, on rows (which it sorts by id).
func treeOrder(rows []itemRow) []domain.ItemMetadata {
	slices.SortFunc(rows, func(a, b itemRow) int { return cmp.Compare(*a.md.ID, *b.md.ID) })
	items := make([]changeset.Item, len(rows))
	for i, r := range rows {
		items[i] = changeset.Item{ID: int64(*r.md.ID), Parent: -1}
		if r.md.ParentID != nil {
			items[i].Parent = int64(*r.md.ParentID)
		}
	}
	out := make([]domain.ItemMetadata, 0, len(rows))
	for _, i := range changeset.Order(items) {
		out = append(out, rows[i].md)
	}
	return out
}

// ItemVersions returns every stored version of the item in the workspace, oldest first;
// none if the workspace holds no such item. It reads them from one snapshot in keyset
// chunks and fails with protocol.ErrResultTooLarge as soon as their estimated encoded size passes
// MaxResultBytes.
func (q *Queries) ItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	var rs []itemRow
	sz := newSizer(ctx, q.MaxResultBytes)
	err := q.readTx(ctx, func(tx pgx.Tx) error {
		for after := int64(0); ; {
			rows, err := tx.Query(ctx, itemSelect+` FROM proj_workspaces.item_history
				WHERE workspace_id = $1 AND item_id = $2 AND version > $3 ORDER BY version LIMIT $4`,
				ws, int64(item), after, readChunk)
			if err != nil {
				return err
			}
			n := len(rs)
			if rs, err = scanItems(rows, ws, rs, sz); err != nil {
				return err
			}
			if len(rs)-n < readChunk {
				return sz.flush()
			}
			after = rs[len(rs)-1].md.Version
		}
	})
	if err != nil {
		return nil, tooLarge(fmt.Errorf("versions of item %d in %s: %w", item, ws, err))
	}
	out := make([]domain.ItemMetadata, len(rs))
	for i, r := range rs {
		out[i] = r.md
	}
	return out, nil
}

// ItemWorkspace finds the workspace that holds item (item ids are unique across
// workspaces, PROTOCOL.md §8 rule 5) and tells whether user is a current member of it;
// uuid.Nil when no workspace holds the item. One indexed lookup (items_item_idx), not
// one per workspace. A removed item's tombstone still names its workspace.
func (q *Queries) ItemWorkspace(ctx context.Context, item domain.ItemID, user uuid.UUID) (uuid.UUID, bool, error) {
	var ws uuid.UUID
	var member bool
	// Ids are unique, so at most one row; should two ever name it, the caller's own is
	// preferred, then the lowest id: the answer stays deterministic.
	err := q.pool.QueryRow(ctx, `SELECT i.workspace_id, EXISTS (SELECT 1 FROM proj_workspaces.members m
			WHERE m.workspace_id = i.workspace_id AND m.user_id = $2 AND NOT m.removed)
		FROM proj_workspaces.items i WHERE i.item_id = $1
		ORDER BY 2 DESC, 1 LIMIT 1`, int64(item), user).Scan(&ws, &member)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("workspace of item %d: %w", item, err)
	}
	return ws, member, nil
}

// WorkspacesOf returns the workspaces user is a member of: the personal workspace (the
// non-shared one the user owns) first, then by the member's name and by id.
func (q *Queries) WorkspacesOf(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	rows, err := q.pool.Query(ctx, `SELECT w.workspace_id, m.name, w.owner_id, w.is_shared, w.is_encrypted,
			m.parent_item_id, w.version
		FROM proj_workspaces.workspaces w
		JOIN proj_workspaces.members m ON m.workspace_id = w.workspace_id
		WHERE m.user_id = $1 AND NOT m.removed
		ORDER BY (w.owner_id = $1 AND NOT w.is_shared) DESC, m.name, w.workspace_id`, user)
	if err != nil {
		return nil, fmt.Errorf("workspaces of %s: %w", user, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (protocol.WorkspaceInfo, error) {
		var w protocol.WorkspaceInfo
		var parent *int64
		err := r.Scan(&w.ID, &w.Name, &w.OwnerID, &w.IsShared, &w.IsEncrypted, &parent, &w.LatestRevision)
		w.ParentItemID = itemIDPtr(parent)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("workspaces of %s: %w", user, err)
	}
	return out, nil
}

func itemIDPtr(p *int64) *domain.ItemID {
	if p == nil {
		return nil
	}
	v := domain.ItemID(*p)
	return &v
}

// Member is one current member of a workspace.
type Member struct {
	UserID       uuid.UUID
	Name         string
	ParentItemID *domain.ItemID
}

// Workspace is a workspace as its owner sees it, with its current members.
type Workspace struct {
	ID          uuid.UUID
	Name        string
	OwnerID     uuid.UUID
	IsShared    bool
	IsEncrypted bool
	CreatedAt   time.Time
	Version     int64 // current workspaceVersion
	UsedBytes   int64
	Members     []Member // by user id
}

// Workspace returns the workspace and its members; found is false if it does not exist.
func (q *Queries) Workspace(ctx context.Context, ws uuid.UUID) (w Workspace, found bool, err error) {
	err = q.readTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT workspace_id, name, owner_id, is_shared, is_encrypted, created_at, version, used_bytes
			FROM proj_workspaces.workspaces WHERE workspace_id = $1`, ws).
			Scan(&w.ID, &w.Name, &w.OwnerID, &w.IsShared, &w.IsEncrypted, &w.CreatedAt, &w.Version, &w.UsedBytes)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		rows, err := tx.Query(ctx, `SELECT user_id, name, parent_item_id FROM proj_workspaces.members
			WHERE workspace_id = $1 AND NOT removed ORDER BY user_id`, ws)
		if err != nil {
			return err
		}
		w.Members, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
			var m Member
			var parent *int64
			err := r.Scan(&m.UserID, &m.Name, &parent)
			m.ParentItemID = itemIDPtr(parent)
			return m, err
		})
		return err
	})
	if err != nil {
		return Workspace{}, false, fmt.Errorf("workspace %s: %w", ws, err)
	}
	w.CreatedAt = w.CreatedAt.UTC()
	return w, found, nil
}

// Membership tells whether the workspace exists and whether user is one of its current
// members.
func (q *Queries) Membership(ctx context.Context, ws, user uuid.UUID) (exists, member bool, err error) {
	w, found, err := q.Workspace(ctx, ws)
	if err != nil || !found {
		return false, false, err
	}
	for _, m := range w.Members {
		if m.UserID == user {
			return true, true, nil
		}
	}
	return true, false, nil
}

// IsMember reports whether user is a current member of the workspace.
func (q *Queries) IsMember(ctx context.Context, ws, user uuid.UUID) (bool, error) {
	var ok bool
	if err := q.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM proj_workspaces.members
		WHERE workspace_id = $1 AND user_id = $2 AND NOT removed)`, ws, user).Scan(&ok); err != nil {
		return false, fmt.Errorf("is %s a member of %s: %w", user, ws, err)
	}
	return ok, nil
}

// OwnerUsage returns the bytes in use across every workspace owner owns.
func (q *Queries) OwnerUsage(ctx context.Context, owner uuid.UUID) (int64, error) {
	return q.OwnerUsageExcept(ctx, owner, uuid.Nil)
}

// OwnerUsageExcept returns the bytes in use across the workspaces owner owns, leaving
// out the workspace except (whose usage the caller knows better).
func (q *Queries) OwnerUsageExcept(ctx context.Context, owner, except uuid.UUID) (int64, error) {
	var used int64
	if err := q.pool.QueryRow(ctx, `SELECT coalesce(sum(used_bytes), 0)::bigint FROM proj_workspaces.workspaces
		WHERE owner_id = $1 AND workspace_id <> $2`, owner, except).Scan(&used); err != nil {
		return 0, fmt.Errorf("usage of owner %s: %w", owner, err)
	}
	return used, nil
}

// WaitForWorkspaceVersion returns once the read model holds version v of the workspace
// (or a later one), polling; it fails with ctx's error when ctx ends first.
func (q *Queries) WaitForWorkspaceVersion(ctx context.Context, ws uuid.UUID, v int64) error {
	delay := time.Millisecond
	for {
		var cur int64
		err := q.pool.QueryRow(ctx, `SELECT version FROM proj_workspaces.workspaces WHERE workspace_id = $1`, ws).Scan(&cur)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("wait for %s@%d: %w", ws, v, err)
		}
		if err == nil && cur >= v {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for %s@%d (read model at %d): %w", ws, v, cur, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, q.PollInterval)
	}
}
