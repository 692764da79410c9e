package projections

import (
	"context"
	"fmt"
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

// applyInline applies to the model's tables in schema, within tx, the model's inline
// events after pos that tx's snapshot sees (read with cfg.InlineAfter) of transactions
// from inlineFrom on: what live tables whose checkpoint is at pos with that inline_from
// hold beyond it, since the projector applies the inline events of older transactions
// again itself (withoutInline). bulk writes as a bulk replay does, into tables without
// unique indexes, which the caller then completes. It reports whether it wrote anything.
func applyInline(ctx context.Context, tx pgx.Tx, cfg RebuildConfig, m *Model, schema string, pos eventstore.Position,
	inlineFrom uint64, bulk bool) (applied bool, err error) {
	for {
		evs, err := cfg.InlineAfter(ctx, tx, pos, cfg.BatchSize)
		if err != nil {
			return false, err
		}
		if len(evs) == 0 {
			return applied, nil
		}
		from := pos
		pos = evs[len(evs)-1].Position
		kept := evs[:0]
		for _, ev := range evs {
			if ev.Position.Commit >= inlineFrom {
				kept = append(kept, ev)
			}
		}
		if ds := prepare(m, kept).ds; len(ds) > 0 {
			if err := m.write(ctx, tx, schema, ds, bulk, nil); err != nil {
				return false, fmt.Errorf("apply the inline events after %s to %s: %w", from, schema, err)
			}
			applied = true
		}
	}
}
