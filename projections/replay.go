package projections

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
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
// In bulk mode, a model with copyBulk has each batch's commuting rows copied ahead in
// the batch's own transaction while the batch before it is finished (copyAhead,
// finishAhead), and latest (if not nil) keeps what every committed batch copied (see
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
	applied := func(res applyResult) {
		logAside(cfg.Logger, m.name, res.setAside)
		cp = res.checkpoint
	}
	progress := func() {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Model: m.name, Events: cp.Events, Estimate: max(estimate, cp.Events),
				Position: cp.Position, Elapsed: time.Since(start)})
		}
	}
	if bulk && m.copyBulk != nil && cfg.Pool.Config().MaxConns >= aheadBatches+2 {
		// Pipelined: each batch's rows that commute are copied ahead (see copyAhead).
		// Connections: the rebuild's lock, the batches' open transactions, and one for a
		// batch applied in parts after a failure while the next stays open.
		ahead := make(chan *replayPage, 1)
		actx, stopAhead := context.WithCancel(gctx)
		g.Go(func() error { return copyAhead(actx, cfg, m, schema, ordered, ahead) })
		g.Go(func() error {
			if keeps != nil {
				defer close(keeps)
			}
			defer func() {
				for p := range ahead { // after a failure: end the transactions begun ahead
					p.ahead.end()
				}
			}()
			defer stopAhead() // first: copyAhead stops, the drain above ends

			for p := range ahead {
				if err := finishAhead(gctx, m, schema, cfg.Logger, cp.Position, p, keeps, apply, applied); err != nil {
					return err
				}
				progress()
			}
			return nil
		})
	} else {
		g.Go(func() error {
			if keeps != nil {
				defer close(keeps)
			}
			for p := range ordered {
				select {
				case <-p.decoded:
				case <-gctx.Done():
					return gctx.Err()
				}
				if _, err := isolating(gctx, m, cfg.Logger, cp.Position, p.b.evs, &p.b, apply, applied); err != nil {
					return err
				}
				progress()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return checkpointRow{}, err
	}
	return cp, nil
}

// replayPage is a page of the global order on its way through replay's pipeline.
type replayPage struct {
	b       prepared      // the events, then (once decoded is closed) their decoding
	decoded chan struct{} // closed by the decoder
	ahead   *copied       // a bulk replay's transaction begun ahead (copyAhead)
}

// copied is a batch's transaction begun ahead by copyAhead, with the model's copyBulk
// run in it.
type copied struct {
	tx    pgx.Tx // nil if Begin failed
	kept  *bulkKept
	err   error         // of Begin or copyBulk
	done  chan struct{} // closed when tx, kept and err are set
	slots chan struct{} // copyAhead's; one is given back by end
}

// end waits for the copy, rolls its transaction back unless it committed (a no-op
// then) and gives its slot back.
func (c *copied) end() {
	<-c.done
	if c.tx != nil {
		_ = c.tx.Rollback(context.Background())
	}
	<-c.slots
}

// aheadBatches is how many batches' transactions a bulk replay keeps open at once: the
// one being finished and the next being copied.
const aheadBatches = 2

// copyAhead takes the decoded pages in order and, for each, begins its transaction and
// runs the model's copyBulk in it, in a goroutine of its own, at most aheadBatches at
// once; it passes the pages on in order. The copy of a batch (the item versions of a
// workspaces replay: COPY into item_history, most of PostgreSQL's work in a replay)
// thus runs while the batch before it is being finished and committed on another
// connection, and the applier (finishAhead) only finishes each in turn. The copies
// commute: item_history has no index and no other write of a replay reads it.
func copyAhead(ctx context.Context, cfg RebuildConfig, m *Model, schema string, ordered <-chan *replayPage,
	ahead chan<- *replayPage) error {
	defer close(ahead)
	slots := make(chan struct{}, aheadBatches)
	for p := range ordered {
		select {
		case <-p.decoded:
		case <-ctx.Done():
			return nil // stopped by finishAhead's failure (which it reports) or the replay's
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c := &copied{kept: &bulkKept{}, done: make(chan struct{}), slots: slots}
		p.ahead = c
		go func() {
			defer close(c.done)
			tx, err := cfg.Pool.Begin(ctx)
			if err != nil {
				c.err = fmt.Errorf("replay %s: begin: %w", schema, err)
				return
			}
			c.tx = tx
			if ds := p.b.ds; len(ds) > 0 {
				if err := m.copyBulk(ctx, tx, schema, ds, c.kept); err != nil {
					c.err = fmt.Errorf("apply %d events to %s: %w", len(ds), schema, err)
				}
			}
		}()
		ahead <- p // finishAhead (or the drain after a failure) ends every copy it receives
	}
	return nil
}

// finishAhead applies page p, whose rows copyAhead copied ahead, after expected: the
// rest of applyTx in the copy's transaction, and its commit. When the copy or the rest
// fails with a poison error, or the page does not start after expected, it rolls that
// transaction back and applies the page as the sequential replay does (isolating, one
// transaction per part: the copy again with it), which sets the event that cannot be
// applied aside. A transient error is returned.
func finishAhead(ctx context.Context, m *Model, schema string, log *slog.Logger, expected eventstore.Position, p *replayPage,
	keeps chan<- *bulkKept, apply applyFunc, applied func(applyResult)) error {
	c := p.ahead
	defer c.end()
	<-c.done
	err := c.err
	if err == nil && !expected.Less(p.b.evs[0].Position) {
		err = fmt.Errorf("replay %s: page at %s does not start after %s", schema, p.b.evs[0].Position, expected)
	}
	if err == nil {
		b := p.b
		b.copied, b.kept = true, c.kept
		var res applyResult
		res, err = applyTx(ctx, c.tx, m, schema, expected, b, true, nil)
		if err == nil {
			err = c.tx.Commit(ctx)
			if err != nil {
				err = fmt.Errorf("replay %s: commit up to %s: %w", schema, res.checkpoint.Position, err)
			}
		}
		if err == nil {
			applied(res)
			if keeps != nil {
				keeps <- c.kept // committed
			}
			return nil
		}
	}
	if !poison(ctx, err) {
		return err
	}
	if c.tx != nil {
		_ = c.tx.Rollback(context.Background())
	}
	_, err = isolating(ctx, m, log, expected, p.b.evs, &p.b, apply, applied)
	return err
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
