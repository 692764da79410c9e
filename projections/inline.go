package projections

import (
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Inline is the PostgreSQL store's inline hook (postgres.Config.Inline): it queues the
// statements that apply recs to every read model into the append's own transaction,
// so the models reflect each commit the moment it is acknowledged. The live projector
// then skips those events (RecordedEvent.Inline) and only moves its checkpoint over
// them; it still applies every event appended without the hook. An event that does not
// decode is left to the projector, which sets it aside as it always did.
//
// Each model's statements run after a ROW
// EXCLUSIVE lock on its data tables taken in the order a rebuild's swap locks them, so
// an append and a swap wait for each other instead of deadlocking; appends do not block
// one another, and the checkpoint, which appends never touch, stays the projector's.
func Inline(recs []eventstore.RecordedEvent, b *pgx.Batch) error {
	for _, m := range models {
		var ds []decoded
		for i := range recs {
			if !strings.HasPrefix(recs[i].Stream, m.streamPrefix) {
				continue
			}
			if d, err := decode(&recs[i]); err == nil {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			continue
		}
		b.Queue(inlineLockSQL(m))
		m.queue(b, m.Schema(), ds, false)
	}
	return nil
}
