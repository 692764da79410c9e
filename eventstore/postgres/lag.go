package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

// countAfterSQL counts what readAllSQL would return, reading only keys and recorded_at
// (never data or metadata, which PostgreSQL keeps out of line once large).
const countAfterSQL = `WITH page AS (
  SELECT tx_id, global_pos, recorded_at
  FROM es_events
  WHERE (tx_id, global_pos) > ($1::xid8, $2::bigint)
    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY tx_id, global_pos LIMIT $3
)
SELECT count(*), (SELECT recorded_at FROM page ORDER BY tx_id, global_pos LIMIT 1) FROM page`

var _ eventstore.LagReader = (*Store)(nil)

// CountAfter implements eventstore.LagReader.
func (s *Store) CountAfter(ctx context.Context, from eventstore.Position, limit int) (int, time.Time, error) {
	op := fmt.Sprintf("count after %s", from)
	if err := s.begin(op); err != nil {
		return 0, time.Time{}, err
	}
	if limit <= 0 {
		return 0, time.Time{}, fmt.Errorf("%s: limit %d is not positive", op, limit)
	}
	if from.Prepare > math.MaxInt64 {
		return 0, time.Time{}, fmt.Errorf("%s: position out of range", op)
	}
	var n int64
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, countAfterSQL, from.Commit, int64(from.Prepare), limit).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.fail(ctx, op, err)
	}
	if oldest == nil {
		return int(n), time.Time{}, nil
	}
	return int(n), *oldest, nil
}
