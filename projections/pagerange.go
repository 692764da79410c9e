package projections

import (
	"context"
	"math"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pageRangeChunk is how many item_history rows one query of pageRange reads: limit+1
// rows past the versions taken decide whether the next version fits.
func pageRangeChunk(limit int) int { return limit + 1 }

// pageRangeSQL reads one chunk of pageRange: the item versions of workspace $1 stored
// after the key ($2 ws_version, $3 item_id, $4 version) up to workspace version $5, at
// most $6, in key order, each with the estimate of its encoded size (less
// itemFixedBytes). It is an index range scan of item_history_ws_version_idx stopped by
// the LIMIT (with an incremental sort on version within an item), merged with the
// items moved out of the workspace in that range (version 0, size $7; moved_out's
// primary key range, also stopped by the LIMIT).
const pageRangeSQL = `(SELECT ws_version, item_id, version, ` + itemSizeSQL + `::bigint
	FROM proj_workspaces.item_history
	WHERE workspace_id = $1 AND (ws_version, item_id, version) > ($2, $3, $4) AND ws_version <= $5
	ORDER BY ws_version, item_id, version LIMIT $6)
	UNION ALL
	(SELECT ws_version, item_id, 0::bigint, $7::bigint FROM proj_workspaces.moved_out
	WHERE workspace_id = $1 AND (ws_version, item_id, 0::bigint) > ($2, $3, $4) AND ws_version <= $5
	ORDER BY ws_version, item_id LIMIT $6)
	ORDER BY 1, 2, 3 LIMIT $6`

// movedOutBytes bounds the encoded size of one movedOut entry of a page
// ({"id":…,"workspaceId":"…"},), which a page walk counts as an item of that size.
const movedOutBytes = 80

// pageItem is an item of a page walk: its latest version so far and that version's
// estimated size.
type pageItem struct{ version, size int64 }

// pageWalk is the state of pageRange: the versions taken so far and the one being read.
type pageWalk struct {
	limit    int   // items per page
	maxBytes int64 // estimated bytes per page (0: no bound)

	latest map[int64]pageItem // taken items
	bytes  int64              // estimated size of the taken items
	taken  int64              // last version taken (0: none yet)

	curV     int64              // version being read (0: none yet)
	cur      map[int64]pageItem // its items
	curNew   int                // items of cur not in latest
	curDelta int64              // how much taking cur would add to bytes
}

// take takes version curV whole.
func (w *pageWalk) take() {
	for id, it := range w.cur {
		w.latest[id] = it
	}
	w.bytes += w.curDelta
	w.taken, w.curNew, w.curDelta = w.curV, 0, 0
	clear(w.cur)
}

// row reads one item version (in key order); it reports whether the version being
// read can no longer fit, so the page ends before it.
func (w *pageWalk) row(v, id, iv, size int64) bool {
	if v != w.curV && w.curV != 0 {
		w.take()
	}
	w.curV = v
	size += itemFixedBytes
	prev, inCur := w.cur[id]
	if !inCur {
		var inLatest bool
		if prev, inLatest = w.latest[id]; !inLatest {
			w.curNew++
			prev = pageItem{}
		}
	}
	if iv >= prev.version {
		w.curDelta += size - prev.size
		w.cur[id] = pageItem{iv, size}
	}
	if w.taken == 0 {
		return false // a page covers at least one version
	}
	return len(w.latest)+w.curNew > w.limit || (w.maxBytes > 0 && w.bytes+w.curDelta > w.maxBytes)
}

// pageRange walks the item versions stored after since in workspace-version order and
// takes whole workspace versions while the distinct items stay within limit and their
// estimated encoded size within maxBytes (at least one version). It returns those
// items' ids (ascending), each one's latest version in the versions taken (its state as
// of the page's last version), and the page's last version. A version without stored
// items has no rows: it falls inside the page when a later version does, or when the
// walk reaches current. Items that moved out of the workspace (moved_out) walk as rows
// of version 0 and movedOutBytes at their move's version: they count against limit as
// items do, and come back with version 0.
//
// It reads in keyset chunks of pageRangeChunk(limit) rows, each query bounded by LIMIT,
// and stops as soon as the version being read cannot fit, so its cost is the page's rows
// plus at most one chunk whatever the backlog after the page. (An unbounded query
// stopped early would still be read to its end: pgx's rows.Close drains it.)
func pageRange(ctx context.Context, tx pgx.Tx, ws uuid.UUID, since, current int64, limit int, maxBytes int64) (ids, versions []int64, to int64, err error) {
	w := &pageWalk{limit: limit, maxBytes: maxBytes, latest: map[int64]pageItem{}, cur: map[int64]pageItem{}}
	chunk := pageRangeChunk(limit)
	// Keyset: the rows after (lastV, lastID, lastVer) in index order; at first, every
	// row of since is at or before it.
	lastV, lastID, lastVer := since, int64(math.MaxInt64), int64(math.MaxInt64)
	to = current
	for {
		rows, err := tx.Query(ctx, pageRangeSQL, ws, lastV, lastID, lastVer, current, chunk, movedOutBytes-itemFixedBytes)
		if err != nil {
			return nil, nil, 0, err
		}
		n, stopped := 0, false
		for rows.Next() {
			var v, id, iv, size int64
			if err := rows.Scan(&v, &id, &iv, &size); err != nil {
				rows.Close()
				return nil, nil, 0, err
			}
			n++
			lastV, lastID, lastVer = v, id, iv
			if w.row(v, id, iv, size) {
				to, stopped = w.curV-1, true
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, 0, err
		}
		if stopped {
			break
		}
		if n < chunk { // read up to current
			if w.curV != 0 {
				w.take()
			}
			break
		}
	}
	ids = make([]int64, 0, len(w.latest))
	for id := range w.latest {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	versions = make([]int64, len(ids))
	for i, id := range ids {
		versions[i] = w.latest[id].version
	}
	return ids, versions, to, nil
}
