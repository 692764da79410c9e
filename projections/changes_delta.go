package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/internal/changeset"
)

// DefaultMaxDelta is Queries.MaxDelta's default: past this many item versions (or
// moved-out items) written since a kept answer, EncodedAnswer reads the workspace in
// full rather than patch the answer (the patch still costs an ordering of every item,
// and a large delta would hold its rows at once).
const DefaultMaxDelta = 10000

// deltaIDsSQL lists the items written after version $2 (their versions in item_history,
// by the index on ws_version; an item may come several times) and those that moved out
// of the workspace after it (moved is true), each list up to $3 rows. Items never leave
// items or item_history otherwise, and every write of an item's latest version writes
// item_history at the same workspace version, in the same transaction as the
// workspace's row (apply.go, apply_share.go).
const deltaIDsSQL = `(SELECT item_id, false AS moved FROM proj_workspaces.item_history
	WHERE workspace_id = $1 AND ws_version > $2 LIMIT $3)
	UNION ALL
	(SELECT item_id, true FROM proj_workspaces.moved_out WHERE workspace_id = $1 AND ws_version > $2 LIMIT $3)`

// deltaSelect reads the latest versions of the items $2 names, by id, with
// changesSelect's columns.
const deltaSelect = `SELECT item_id, version, device_id, parent_id, parent_version,
	temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype
	FROM proj_workspaces.items WHERE workspace_id = $1 AND item_id = ANY($2) ORDER BY item_id`

// patchedAnswer builds the workspace's answer from base and the items written since
// base.Version, read in one snapshot with the workspace's stamp. ok is false (and
// nothing is wrong) when it cannot: the workspace is not at a later version than the
// base (a rebuild or a restore rewrote it at the same version, or it went back), or
// more than MaxDelta item versions changed since.
func (q *Queries) patchedAnswer(ctx context.Context, ws uuid.UUID, base *changeset.Base, enc ItemEncoder) (a changeset.Answer, ok bool, err error) {
	var d changeset.Delta
	err = q.readTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, stampSQL, ws).Scan(&a.Version, &a.Tag); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrWorkspaceNotFound
			}
			return err
		}
		if a.Version <= base.Version {
			return nil
		}
		changed, moved, fits, err := deltaIDs(ctx, tx, ws, base.Version, q.maxDelta())
		if err != nil || !fits {
			return err
		}
		d, err = readDelta(ctx, tx, ws, changed, moved, enc)
		ok = err == nil
		return err
	})
	if err != nil {
		return changeset.Answer{}, false, tooLarge(fmt.Errorf("changes of workspace %s since %d: %w", ws, base.Version, err))
	}
	if !ok {
		return changeset.Answer{}, false, nil
	}
	a.Pieces, a.Items = changeset.Patch(*base, d)
	a.Patched = true
	sz := newSizer(ctx, q.MaxResultBytes)
	if err := sz.addBytes(changeset.Estimate(a.Items)); err != nil {
		return changeset.Answer{}, false, tooLarge(fmt.Errorf("changes of workspace %s: %w", ws, err))
	}
	return a, true, sz.flush()
}

func (q *Queries) maxDelta() int {
	if q.MaxDelta > 0 {
		return q.MaxDelta
	}
	return DefaultMaxDelta
}

// deltaIDs returns the ids of the items written after version since, and of those that
// moved out after it, each sorted and distinct; fits is false when either list passes
// limit rows.
func deltaIDs(ctx context.Context, tx pgx.Tx, ws uuid.UUID, since int64, limit int) (changed, moved []int64, fits bool, err error) {
	rows, err := tx.Query(ctx, deltaIDsSQL, ws, since, limit+1)
	if err != nil {
		return nil, nil, false, err
	}
	var id int64
	var isMoved bool
	_, err = pgx.ForEachRow(rows, []any{&id, &isMoved}, func() error {
		if isMoved {
			moved = append(moved, id)
		} else {
			changed = append(changed, id)
		}
		return nil
	})
	if err != nil || len(changed) > limit || len(moved) > limit {
		return nil, nil, false, err
	}
	slices.Sort(changed)
	slices.Sort(moved)
	return slices.Compact(changed), slices.Compact(moved), true, nil
}

// readDelta renders the latest versions of the changed items into a Delta; a changed
// item no longer in items (it moved out too) is removed, as are the moved ones.
func readDelta(ctx context.Context, tx pgx.Tx, ws uuid.UUID, changed, moved []int64, enc ItemEncoder) (changeset.Delta, error) {
	var d changeset.Delta
	rows, err := tx.Query(ctx, deltaSelect, ws, changed)
	if err != nil {
		return d, err
	}
	defer rows.Close()
	var dec rowDecoder
	dec.md.WorkspaceID = ws
	for rows.Next() {
		if err := dec.decode(rows); err != nil {
			return d, err
		}
		start := len(d.Text)
		d.Text = enc(d.Text, &dec.md)
		it := itemOf(&dec.md, itemSize(&dec.md), int32(len(d.Text)-start))
		it.Off = int64(start)
		d.Items = append(d.Items, it)
	}
	if err := rows.Err(); err != nil {
		return d, err
	}
	d.Removed = moved
	for i, k := 0, 0; i < len(changed); i++ { // changed and d.Items are both by id
		if k < len(d.Items) && d.Items[k].ID == changed[i] {
			k++
			continue
		}
		d.Removed = append(d.Removed, changed[i])
	}
	slices.Sort(d.Removed)
	return d, nil
}
