package projections

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Inline is the PostgreSQL store's inline hook (postgres.Config.Inline): it queues the
// statements that apply recs to every read model into the append's own transaction,
// so the models reflect each commit the moment it is acknowledged. The live projector
// then skips those events (RecordedEvent.Inline) and only moves its checkpoint over
// them; it still applies every event appended without the hook. A record whose Value
// is a domain.Event is applied as that value (the service sets it to the event it
// encoded, sparing the decoding of the bytes it has just written); any other record is
// decoded from its Data. A record of a model's streams that does not decode fails the
// append (nothing of it is written): an inline event is one its append applied, which
// the live projector skips without decoding it (prepareLive). Appended without the hook,
// such an event is set aside by the projector as before.
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
			if ev, ok := recs[i].Value.(domain.Event); ok && ev.EventType() == recs[i].Type && reflect.TypeOf(ev).Kind() != reflect.Pointer {
				ds = append(ds, decoded{rec: &recs[i], event: ev})
				continue
			}
			d, err := decode(&recs[i])
			if err != nil {
				return fmt.Errorf("%s: %s@%d (%s): %w", m.name, recs[i].Stream, recs[i].StreamVersion, recs[i].Type, err)
			}
			ds = append(ds, d)
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
	// The store's tables are found by the session's own search_path: tx may have been
	// left on a model's schema (SET LOCAL in a savepoint lasts until tx ends, as the
	// swap's catch-up leaves it).
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO DEFAULT`); err != nil {
		return false, fmt.Errorf("apply the inline events after %s: reset search_path: %w", pos, err)
	}
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
