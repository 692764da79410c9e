package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
	"github.com/stacksync-es/syncservice/internal/leader"
)

// Source is what a projector needs of the event store: the global order, read in pages
// and followed live.
type Source interface {
	ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
	Subscribe(ctx context.Context, from eventstore.Position, handle func(ctx context.Context, batch []eventstore.RecordedEvent) error) error
}

// Config configures a Projector.
type Config struct {
	// Model is the name of the read model to maintain (ModelWorkspaces, ModelAccounts). Required.
	Model string
	// DSN of the read models' database; the leader lock is taken there. Required.
	DSN string
	// Pool writes the read model (same database as DSN). Required.
	Pool *pgxpool.Pool
	// Source is the event store. Required.
	Source Source
	// Reader reads the global order for the projector; nil: Source, read by this
	// projector alone. syncd passes the process's shared follow.Tail.
	Reader follow.Reader
	// BatchSize is the most events applied in one transaction. Default 500.
	BatchSize int
	// BatchBytes bounds the events' bytes (eventstore.Size) applied in one transaction
	// (a batch always holds at least one event). Default 32 MiB: far below PostgreSQL's
	// 1 GB message limit whatever the events' sizes (up to eventstore.MaxRecordSize).
	BatchBytes int64
	// StallAfter is how long the projector may make no progress while events are
	// pending (a batch failing again and again, or one applying for that long) before
	// Healthy reports it. Default 30s.
	StallAfter time.Duration
	// LagScanLimit bounds how many events Lag counts in the backlog (without reading
	// their data where the store can: eventstore.LagReader). Default 10,000.
	LagScanLimit int
	// LeaderRetry is how often a standby tries to become the active projector. Default 1s.
	LeaderRetry time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
	// OnApplied, if set, is called after each batch is committed (a latency hint for
	// followers gated on this model's checkpoint, such as the notifier; it must not block).
	OnApplied func()
	// Linger, if positive, is how long the projector waits after a batch smaller than
	// BatchSize before it reads again, so that what arrives meanwhile goes into one batch
	// (one transaction instead of one per event). syncd sets it when appends write the
	// read models inline, which leaves the projector off every read's and notification's
	// path. Zero: read again at once.
	Linger time.Duration
	// CheckpointEvery, if positive, is how often at most the projector stores its
	// checkpoint while it only moves it over events it need not apply (events their
	// appends applied inline, other models' events): in between it moves it in memory
	// only. It stores the move with the next batch that has something to apply, once
	// CheckpointEvery has passed, or as soon as a read finds nothing new. What is lost
	// with a crash is a skip over at most that many events again; a standby or a
	// restart starts from the stored checkpoint. syncd sets it with inline projection,
	// where nearly every batch only moves the checkpoint. Zero: every batch stores it.
	CheckpointEvery time.Duration

	// afterApply, set by tests, runs in the batch transaction after the rows are written
	// and before the checkpoint is; an error rolls the transaction back.
	afterApply func() error
}

// DefaultConfig returns the defaults; Model, DSN, Pool and Source are left to the
// caller.
func DefaultConfig() Config {
	return Config{
		BatchSize:    500,
		BatchBytes:   32 << 20,
		StallAfter:   30 * time.Second,
		LagScanLimit: 10000,
		LeaderRetry:  time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.BatchSize = cmp.Or(c.BatchSize, d.BatchSize)
	c.BatchBytes = cmp.Or(c.BatchBytes, d.BatchBytes)
	c.StallAfter = cmp.Or(c.StallAfter, d.StallAfter)
	c.LagScanLimit = cmp.Or(c.LagScanLimit, d.LagScanLimit)
	c.LeaderRetry = cmp.Or(c.LeaderRetry, d.LeaderRetry)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.Model == "" || c.DSN == "" || c.Pool == nil || c.Source == nil {
		return errors.New("projections: Model, DSN, Pool and Source are required")
	}
	if _, err := ModelNamed(c.Model); err != nil {
		return err
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.StallAfter < 0 || c.LagScanLimit < 0 || c.LeaderRetry < 0 {
		return errors.New("projections: BatchSize, BatchBytes, StallAfter, LagScanLimit and LeaderRetry must not be negative")
	}
	return nil
}

// Projector keeps one read model up to date with the global order of the store.
type Projector struct {
	cfg   Config
	model *Model
	log   *slog.Logger
	f     *follow.Follower

	mu          sync.Mutex
	position    eventstore.Position
	events      int64     // events the model has processed, as stored with the checkpoint
	lastEventAt time.Time // RecordedAt of the last processed event
	inlineFrom  uint64    // the checkpoint's inline_from as last read or written
	// stored is the checkpoint's position as last read or written; position is ahead
	// of it by deferred events when a move is deferred (Config.CheckpointEvery).
	stored   eventstore.Position
	storedAt time.Time
	deferred int64
	applied  atomic.Int64
	setAside atomic.Int64
	active   atomic.Bool
	health   health
}

// New returns a projector for cfg.Model.
func New(cfg Config) (*Projector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := ModelNamed(cfg.Model)
	if err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, model: m, log: cfg.Logger.With("projector", m.name)}
	reader := cfg.Reader
	if reader == nil {
		reader = follow.StoreReader{Store: cfg.Source}
	}
	// The projector keeps its own health (a batch applying for too long counts), so the
	// follower's stall threshold is only the default.
	p.f, err = follow.New(follow.Config{Name: "projector:" + m.name, Reader: reader, Load: p.load,
		BatchSize: cfg.BatchSize, BatchBytes: cfg.BatchBytes, StallAfter: cfg.StallAfter, Linger: cfg.Linger,
		Idle: p.storeDeferred, Logger: p.log})
	if err != nil {
		return nil, fmt.Errorf("projector %s: %w", m.name, err)
	}
	return p, nil
}

// Run keeps the read model up to date until ctx ends, while this process holds the
// model's leader lock ("projector:<model>"): exactly one projector per model is active
// across processes, and a standby takes over when the holder dies. It returns ctx.Err().
func (p *Projector) Run(ctx context.Context) error {
	return leader.Run(ctx, leader.Config{
		DSN:    p.cfg.DSN,
		Name:   "projector:" + p.model.name,
		Retry:  p.cfg.LeaderRetry,
		Logger: p.cfg.Logger,
	}, p.follow)
}

// follow migrates the model's tables, then applies the global order from the stored
// checkpoint: catching up, then following live, until ctx ends (the role is lost, or
// shutdown). When the stored checkpoint moved under it (a rebuild swapped fresh tables
// in), it resumes from the stored one. A failure is retried after LeaderRetry while
// this process keeps the role, so that Healthy reports a projector whose batches keep
// failing (the failures' time adds up) and a standby is never reported for its own
// earlier failures: its health starts afresh with each term.
func (p *Projector) follow(ctx context.Context) error {
	if err := migrateSchema(ctx, p.cfg.Pool, p.model, p.model.Schema()); err != nil {
		return err
	}
	p.health.reset()
	p.active.Store(true)
	defer p.active.Store(false)
	for {
		err := p.followOnce(ctx)
		if errors.Is(err, errCheckpointMoved) && ctx.Err() == nil {
			p.log.Warn("checkpoint moved by another writer; resuming from it", "err", err)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("projector %s: %w", p.model.name, err)
		p.health.failed(err)
		if errors.Is(err, eventstore.ErrClosed) {
			return err
		}
		p.log.Warn("following failed; retrying", "err", err, "in", p.cfg.LeaderRetry)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.cfg.LeaderRetry):
		}
	}
}

// followOnce reads the stored checkpoint and follows the global order from it until
// ctx ends or a batch fails.
func (p *Projector) followOnce(ctx context.Context) error {
	return p.f.Run(ctx, func(ctx context.Context, batch []eventstore.RecordedEvent) (int, error) {
		if _, err := p.applyBatch(ctx, p.Status().Position, batch); err != nil {
			// The parts committed before the failure (see isolating) are done.
			at := p.Status().Position
			done := 0
			for done < len(batch) && !at.Less(batch[done].Position) {
				done++
			}
			return done, err
		}
		p.health.progressed()
		return len(batch), nil
	})
}

// load is the follower's checkpoint: the model's stored one.
func (p *Projector) load(ctx context.Context) (eventstore.Position, error) {
	cp, err := readCheckpoint(ctx, p.cfg.Pool, p.model.Schema(), false)
	if err != nil {
		return eventstore.Position{}, err
	}
	p.setCheckpoint(cp)
	return cp.Position, nil
}

// Wake makes an idle projector read the store now instead of at its next poll (a
// latency hint only).
func (p *Projector) Wake() { p.f.Wake() }

// applyBatch applies evs after expected and returns the new position: in one
// transaction with the checkpoint, or, when the batch holds an event the model cannot
// apply, in parts, that event set aside (see isolating).
func (p *Projector) applyBatch(ctx context.Context, expected eventstore.Position, evs []eventstore.RecordedEvent) (eventstore.Position, error) {
	p.health.started()
	defer p.health.finished()
	p.mu.Lock()
	b := prepareLive(p.model, evs, p.inlineFrom)
	deferred := p.cfg.CheckpointEvery > 0 && p.cfg.afterApply == nil && len(evs) > 0 && len(b.ds) == 0 &&
		len(b.aside) == 0 && expected == p.position && time.Since(p.storedAt) < p.cfg.CheckpointEvery
	if deferred {
		last := evs[len(evs)-1]
		p.position, p.events, p.lastEventAt = last.Position, p.events+int64(len(evs)), last.RecordedAt
		p.deferred += int64(len(evs))
	}
	p.mu.Unlock()
	if deferred {
		p.health.progressed()
		return evs[len(evs)-1].Position, nil
	}
	cp, err := isolating(ctx, p.model, p.log, expected, evs, &b, p.applyOwnTx, func(res applyResult) {
		p.applied.Add(int64(res.applied))
		p.setAside.Add(int64(len(res.setAside)))
		logAside(p.log, p.model.name, res.setAside)
		p.setCheckpoint(res.checkpoint)
		p.health.progressed()
		if p.cfg.OnApplied != nil {
			p.cfg.OnApplied()
		}
	})
	if err != nil {
		if ctx.Err() == nil { // not a failure of the model: the role was lost, or shutdown
			p.health.failed(err)
		}
		return expected, err
	}
	return cp.Position, nil
}

// applyOwnTx is the projector's applyFunc: one transaction with the checkpoint.
func (p *Projector) applyOwnTx(ctx context.Context, expected eventstore.Position, b prepared) (applyResult, error) {
	p.mu.Lock()
	inlineFrom := p.inlineFrom
	// A deferred move (Config.CheckpointEvery) goes with this batch's: from the stored
	// checkpoint, over the deferred events too.
	from, extra, lastAt := expected, int64(0), p.lastEventAt
	if p.deferred > 0 && expected == p.position {
		from, extra = p.stored, p.deferred
	}
	p.mu.Unlock()
	if b.undecoded {
		inlineFrom = b.undecodedFrom // moveOnly's guard holds the stored one to it
	}
	if len(b.aside) == 0 && len(withoutInline(b.ds, inlineFrom)) == 0 && p.cfg.afterApply == nil && len(b.evs) > 0 {
		last := b.evs[len(b.evs)-1]
		return p.moveOnly(ctx, from, inlineFrom, last.Position, last.RecordedAt, extra+int64(len(b.evs)))
	}
	if extra > 0 {
		res, err := p.moveOnly(ctx, from, inlineFrom, expected, lastAt, extra)
		if err != nil {
			return applyResult{}, err
		}
		p.setCheckpoint(res.checkpoint)
	}
	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		return applyResult{}, fmt.Errorf("projector %s: begin: %w", p.model.name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit
	b.skipInline = true
	res, err := applyTx(ctx, tx, p.model, p.model.Schema(), expected, b, false, p.cfg.afterApply)
	if err != nil {
		return applyResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return applyResult{}, fmt.Errorf("projector %s: commit up to %s: %w", p.model.name, res.checkpoint.Position, err)
	}
	return res, nil
}

// storeDeferred stores a checkpoint move that applyBatch deferred (the follower's Idle:
// a read found nothing new).
func (p *Projector) storeDeferred(ctx context.Context) error {
	p.mu.Lock()
	n, from, to, at, inlineFrom := p.deferred, p.stored, p.position, p.lastEventAt, p.inlineFrom
	p.mu.Unlock()
	if n == 0 {
		return nil
	}
	res, err := p.moveOnly(ctx, from, inlineFrom, to, at, n)
	if err != nil {
		return err
	}
	p.setCheckpoint(res.checkpoint)
	if p.cfg.OnApplied != nil { // a notifier may wait for this checkpoint (events not applied inline)
		p.cfg.OnApplied()
	}
	return nil
}

// moveOnly moves the checkpoint from expected to to (at: the recording time of the
// event there) over count events, which hold nothing to apply (other models' events,
// or events their appends applied inline), in one round trip: an implicit transaction
// that moves it only if it is still at expected with the same inline_from, and does not
// wait for its WAL flush (a lost move costs a skip again).
func (p *Projector) moveOnly(ctx context.Context, expected eventstore.Position, inlineFrom uint64, to eventstore.Position,
	at time.Time, count int64) (applyResult, error) {
	vals := []uint64{to.Commit, to.Prepare, expected.Commit, expected.Prepare, inlineFrom}
	args := make([]any, len(vals))
	for i, v := range vals {
		n, err := toInt64(v)
		if err != nil {
			return applyResult{}, err
		}
		args[i] = n
	}
	args = append(args, count, at)
	schema := p.model.Schema()
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	var events int64
	b.Queue(`UPDATE `+pgx.Identifier{schema, "checkpoint"}.Sanitize()+`
		SET commit_pos = $1, prepare_pos = $2, events = events + $6, last_event_at = $7
		WHERE commit_pos = $3 AND prepare_pos = $4 AND inline_from = $5 RETURNING events`, args...).
		QueryRow(func(row pgx.Row) error { return row.Scan(&events) })
	err := p.cfg.Pool.SendBatch(ctx, b).Close()
	if errors.Is(err, pgx.ErrNoRows) {
		stored, rerr := readCheckpoint(ctx, p.cfg.Pool, schema, false)
		if rerr != nil {
			return applyResult{}, rerr
		}
		return applyResult{}, &checkpointMovedError{schema: schema, expected: expected, stored: stored.Position}
	}
	if err != nil {
		return applyResult{}, fmt.Errorf("projector %s: move the checkpoint to %s: %w", p.model.name, to, err)
	}
	return applyResult{checkpoint: checkpointRow{Position: to, Events: events, LastEventAt: at, InlineFrom: inlineFrom}}, nil
}

func (p *Projector) setCheckpoint(cp checkpointRow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.position, p.events, p.lastEventAt, p.inlineFrom = cp.Position, cp.Events, cp.LastEventAt, cp.InlineFrom
	p.stored, p.storedAt, p.deferred = cp.Position, time.Now(), 0
}

// Status is a projector's progress as this process knows it.
type Status struct {
	Model       string
	Active      bool                // this process holds the model's leader lock
	Position    eventstore.Position // the checkpoint last loaded or committed here
	Events      int64               // events the model has processed in all (from the checkpoint)
	LastEventAt time.Time           // recording time of the last processed event
	Applied     int64               // events of the model's streams applied by this process
	SetAside    int64               // events set aside by this process (see SetAsideOf)
}

// Status returns the projector's progress.
func (p *Projector) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Model: p.model.name, Active: p.active.Load(), Position: p.position, Events: p.events,
		LastEventAt: p.lastEventAt, Applied: p.applied.Load(), SetAside: p.setAside.Load(),
	}
}

// Lag is how far a model is behind the store.
type Lag struct {
	// Events not yet applied; when Capped, there are at least this many.
	Events int
	Capped bool
	// Behind is the age of the oldest event not yet applied (0 when caught up).
	Behind time.Duration
}

// Lag measures the model's backlog: the store's events after the stored checkpoint
// (which any process's active projector moves, so a standby reports it too), or after
// this process's position if it is the active projector and ahead of it (a deferred
// move, Config.CheckpointEvery).
func (p *Projector) Lag(ctx context.Context) (Lag, error) {
	cp, err := readCheckpoint(ctx, p.cfg.Pool, p.model.Schema(), false)
	if err != nil {
		return Lag{}, err
	}
	pos := cp.Position
	if st := p.Status(); st.Active && pos.Less(st.Position) {
		pos = st.Position
	}
	return lagAfter(ctx, p.cfg.Source, pos, p.cfg.LagScanLimit, time.Now())
}

// lagAfter counts the events after pos (up to limit, then Capped) and the age of the
// first, without reading their data where the store can count (eventstore.LagReader,
// the PostgreSQL store: a key-only query), and otherwise in pages bounded in bytes: it
// runs on every /metrics scrape and `syncctl projections status`.
func lagAfter(ctx context.Context, src Source, pos eventstore.Position, limit int, now time.Time) (Lag, error) {
	n, oldest, err := eventstore.CountAfter(ctx, src, pos, limit+1)
	if err != nil {
		return Lag{}, fmt.Errorf("measure lag after %s: %w", pos, err)
	}
	var l Lag
	if n > limit {
		l.Events, l.Capped = limit, true
	} else {
		l.Events = n
	}
	if n > 0 {
		l.Behind = max(now.Sub(oldest), 0)
	}
	return l, nil
}

// ModelStatus is a model's stored checkpoint and its lag behind the store.
type ModelStatus struct {
	Model       string
	Position    eventstore.Position
	Events      int64
	LastEventAt time.Time
	Lag         Lag
	SetAside    int64 // events set aside (listed by SetAsideOf)
}

// StatusOf reads the named model's checkpoint from db and measures its lag against src,
// counting at most scanLimit events (default 10,000 when <= 0).
func StatusOf(ctx context.Context, db Querier, src Source, model string, scanLimit int) (ModelStatus, error) {
	m, err := ModelNamed(model)
	if err != nil {
		return ModelStatus{}, err
	}
	if scanLimit <= 0 {
		scanLimit = 10000
	}
	cp, err := readCheckpoint(ctx, db, m.Schema(), false)
	if err != nil {
		return ModelStatus{}, err
	}
	lag, err := lagAfter(ctx, src, cp.Position, scanLimit, time.Now())
	if err != nil {
		return ModelStatus{}, fmt.Errorf("status of %s: %w", model, err)
	}
	_, aside, err := SetAsideOf(ctx, db, model, 1)
	if err != nil {
		return ModelStatus{}, err
	}
	return ModelStatus{Model: model, Position: cp.Position, Events: cp.Events, LastEventAt: cp.LastEventAt, Lag: lag, SetAside: aside}, nil
}
