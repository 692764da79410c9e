package projections

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/eventstore"
)

// replay applies the global order to the model tables in schema from their checkpoint
// (in bulk mode the bulk-loaded tables have no indexes: see dropBulkIndexes),
// one transaction per batch, until it has caught up with the store or, when upTo is set,
// reached exactly *upTo.
//
// It is a pipeline: one goroutine reads pages of the global order, cfg.Decoders
// goroutines decode them (prepare needs no database), and one applies them, in the
// order they were read, each in its own transaction. Reading, decoding and writing
// overlap; the pages in flight are bounded (each by BatchSize and BatchBytes).
//
// In bulk mode, latest (if not nil) keeps what every committed batch copied (see
// latestItems).
func replay(ctx context.Context, cfg RebuildConfig, m *Model, schema string, upTo *eventstore.Position,
	bulk bool, estimate int64, start time.Time, latest *latestItems) (checkpointRow, error) {
	cp, err := readCheckpoint(ctx, cfg.Pool, schema, false)
	if err != nil {
		return checkpointRow{}, err
	}
	if upTo != nil && upTo.Less(cp.Position) {
		return checkpointRow{}, fmt.Errorf("replay %s: already past %s (at %s)", schema, *upTo, cp.Position)
	}
	from := cp.Position // cp belongs to the applier from here on
	g, gctx := errgroup.WithContext(ctx)
	toDecode := make(chan *replayPage, cfg.Decoders)
	ordered := make(chan *replayPage, cfg.Decoders+1)
	g.Go(func() error {
		defer close(toDecode)
		defer close(ordered)
		return readPages(gctx, cfg, schema, from, upTo, func(evs []eventstore.RecordedEvent) error {
			p := &replayPage{b: prepared{evs: evs}, decoded: make(chan struct{})}
			for _, ch := range []chan *replayPage{ordered, toDecode} {
				select {
				case ch <- p:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	})
	for range cfg.Decoders {
		g.Go(func() error {
			for p := range toDecode {
				p.b = prepare(m, p.b.evs)
				close(p.decoded)
			}
			return nil
		})
	}
	// What committed batches copied goes to latest in a goroutine of its own, off the
	// applier's path (it took 1.5 s of a million-event replay there).
	var keeps chan *bulkKept
	if bulk && latest.keeping() {
		keeps = make(chan *bulkKept, 2)
		g.Go(func() error {
			for k := range keeps {
				latest.keep(k)
			}
			return nil
		})
	}
	g.Go(func() error {
		if keeps != nil {
			defer close(keeps)
		}
		apply := func(ctx context.Context, expected eventstore.Position, b prepared) (applyResult, error) {
			if keeps == nil {
				return applyOwnTx(ctx, cfg.Pool, m, schema, expected, b, bulk)
			}
			b.kept = &bulkKept{}
			res, err := applyOwnTx(ctx, cfg.Pool, m, schema, expected, b, bulk)
			if err == nil {
				keeps <- b.kept // committed
			}
			return res, err
		}
		for p := range ordered {
			select {
			case <-p.decoded:
			case <-gctx.Done():
				return gctx.Err()
			}
			_, err := isolating(gctx, m, cfg.Logger, cp.Position, p.b.evs, &p.b, apply, func(res applyResult) {
				logAside(cfg.Logger, m.name, res.setAside)
				cp = res.checkpoint
			})
			if err != nil {
				return err
			}
			if cfg.Progress != nil {
				cfg.Progress(Progress{Model: m.name, Events: cp.Events, Estimate: max(estimate, cp.Events),
					Position: cp.Position, Elapsed: time.Since(start)})
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return checkpointRow{}, err
	}
	return cp, nil
}

// replayPage is a page of the global order on its way through replay's pipeline.
type replayPage struct {
	b       prepared      // the events, then (once decoded is closed) their decoding
	decoded chan struct{} // closed by the decoder
}

// readPages reads the global order after from, in pages bounded by cfg.BatchSize and
// cfg.BatchBytes, and passes each non-empty page to emit, until it has caught up with
// the store or, when upTo is set, reached exactly *upTo.
func readPages(ctx context.Context, cfg RebuildConfig, schema string, from eventstore.Position, upTo *eventstore.Position,
	emit func([]eventstore.RecordedEvent) error) error {
	for {
		if upTo != nil && from == *upTo {
			return nil
		}
		evs, err := eventstore.ReadAllBounded(ctx, cfg.Source, from, cfg.BatchSize, cfg.BatchBytes)
		if err != nil {
			return fmt.Errorf("replay %s: read after %s: %w", schema, from, err)
		}
		full := eventstore.MayHaveMore(evs, cfg.BatchSize, cfg.BatchBytes)
		if upTo != nil {
			n := 0
			for n < len(evs) && !upTo.Less(evs[n].Position) {
				n++
			}
			if n < len(evs) {
				full = false // reached the end of the range
			}
			evs = evs[:n]
			if !full && (len(evs) == 0 || evs[len(evs)-1].Position != *upTo) {
				return fmt.Errorf("replay %s: the store's visible history after %s does not reach %s", schema, from, *upTo)
			}
		}
		if len(evs) > 0 {
			if err := emit(evs); err != nil {
				return err
			}
			from = evs[len(evs)-1].Position
		}
		if !full {
			return nil
		}
	}
}
