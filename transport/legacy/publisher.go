package legacy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate creates the legacy publishers' checkpoint table.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate legacy: %w", err)
	}
	return pgmigrate.Apply(ctx, db, "legacy", sub)
}

// LoadCheckpoint returns the position up to which the publisher name has published.
func LoadCheckpoint(ctx context.Context, db *pgxpool.Pool, name string) (eventstore.Position, error) {
	var c, p int64
	err := db.QueryRow(ctx, `SELECT commit_pos, prepare_pos FROM legacy_checkpoints WHERE name = $1`, name).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("load legacy checkpoint %s: %w", name, err)
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, nil
}

func saveCheckpoint(ctx context.Context, db *pgxpool.Pool, name string, pos eventstore.Position) error {
	_, err := db.Exec(ctx, `INSERT INTO legacy_checkpoints (name, commit_pos, prepare_pos) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET commit_pos = EXCLUDED.commit_pos, prepare_pos = EXCLUDED.prepare_pos, updated_at = now()
		WHERE (legacy_checkpoints.commit_pos, legacy_checkpoints.prepare_pos) < (EXCLUDED.commit_pos, EXCLUDED.prepare_pos)`,
		name, int64(pos.Commit), int64(pos.Prepare))
	if err != nil {
		return fmt.Errorf("save legacy checkpoint %s at %s: %w", name, pos, err)
	}
	return nil
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// DSN of the database holding the checkpoint and the lock electing the single
	// active publisher. Required.
	DSN string
	// AMQPURL is the legacy broker (its own vhost). Required.
	AMQPURL string
	// Name is the checkpoint row and the leader role. Default "legacy-notifier".
	Name string
	// Horizon, if set, is the position up to which commits may be published: syncd
	// passes the JSON notifier's checkpoint, so a legacy device is told of a commit no
	// earlier than JSON devices, when reads already show it (PROTOCOL.md §5).
	Horizon func(ctx context.Context) (eventstore.Position, error)
	// BatchSize is the most events read at once. Default 256.
	BatchSize int
	// MaxMessageBytes: a larger notification is skipped (logged), never published (the
	// broker would close the channel). Default 128 MiB.
	MaxMessageBytes int
	// ConfirmTimeout bounds the wait for a batch's confirms. Default 15s.
	ConfirmTimeout time.Duration
	// PollMin and PollMax bound the adaptive wait while nothing is to be published.
	// Defaults 5ms, 200ms.
	PollMin, PollMax time.Duration
	Logger           *slog.Logger
}

func (c *PublisherConfig) defaults() error {
	if c.DSN == "" || c.AMQPURL == "" {
		return errors.New("legacy publisher: DSN and AMQPURL are required")
	}
	if c.Name == "" {
		c.Name = "legacy-notifier"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 128 << 20
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 15 * time.Second
	}
	if c.PollMin <= 0 {
		c.PollMin = 5 * time.Millisecond
	}
	if c.PollMax < c.PollMin {
		c.PollMax = max(c.PollMin, 200*time.Millisecond)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Publisher follows the store's global order and publishes every Committed event as
// the legacy notifyCommit (a Java-serialized ObjectMQ Request, type=java) to the
// workspace's fan-out exchange multi#<workspaceId> on the legacy broker: only after
// the event is durable (the store returned it), at least once, in order, never beyond
// Horizon, advancing its checkpoint only after the broker confirmed the batch. It runs
// as the single active instance of its name. A commit whose notification cannot be
// built or is too large is logged and passed over, so that one event never stops the
// others.
type Publisher struct {
	cfg       PublisherConfig
	store     eventstore.Store
	log       *slog.Logger
	published atomic.Int64 // notifications confirmed, for tests and logs
}

// NewPublisher checks cfg.
func NewPublisher(cfg PublisherConfig, store eventstore.Store) (*Publisher, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg, store: store, log: cfg.Logger.With("component", "legacy-publisher")}, nil
}

// Published returns how many notifications this process has had confirmed.
func (p *Publisher) Published() int64 { return p.published.Load() }

// Run publishes while this process holds the role, until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	return leader.Run(ctx, leader.Config{DSN: p.cfg.DSN, Name: "legacy:" + p.cfg.Name, Logger: p.log}, p.lead)
}

func (p *Publisher) lead(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, p.cfg.DSN)
	if err != nil {
		return fmt.Errorf("legacy publisher: open database: %w", err)
	}
	defer pool.Close()
	return broker.Run(ctx, broker.Config{URL: p.cfg.AMQPURL, Name: "syncd-legacy-publisher", Logger: p.log},
		func(ctx context.Context, conn *amqp.Connection) error {
			err := p.session(ctx, conn, pool)
			if ctx.Err() == nil && err != nil {
				p.log.Warn("legacy publisher: session failed; starting over", "err", err)
				_ = conn.Close() // broker.Run dials again after a back-off
			}
			return err
		})
}

func (p *Publisher) session(ctx context.Context, conn *amqp.Connection, pool *pgxpool.Pool) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	declared := map[uuid.UUID]bool{}
	wait := p.cfg.PollMin
	for {
		n, err := p.step(ctx, ch, pool, declared)
		if err != nil {
			return err
		}
		if n > 0 {
			wait = p.cfg.PollMin
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, p.cfg.PollMax)
	}
}

// step publishes one batch after the checkpoint and saves the checkpoint; it returns
// how many events it passed.
func (p *Publisher) step(ctx context.Context, ch *amqp.Channel, pool *pgxpool.Pool, declared map[uuid.UUID]bool) (int, error) {
	from, err := LoadCheckpoint(ctx, pool, p.cfg.Name)
	if err != nil {
		return 0, err
	}
	events, err := p.store.ReadAll(ctx, from, p.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("read after %s: %w", from, err)
	}
	if p.cfg.Horizon != nil && len(events) > 0 {
		h, err := p.cfg.Horizon(ctx)
		if err != nil {
			return 0, fmt.Errorf("horizon: %w", err)
		}
		i := 0
		for i < len(events) && !h.Less(events[i].Position) {
			i++
		}
		events = events[:i]
	}
	if len(events) == 0 {
		return 0, nil
	}
	var confirms []*amqp.DeferredConfirmation
	for _, e := range events {
		dc, err := p.publish(ctx, ch, e, declared)
		if err != nil {
			return 0, err
		}
		if dc != nil {
			confirms = append(confirms, dc)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.ConfirmTimeout)
	defer cancel()
	for _, dc := range confirms {
		acked, err := dc.WaitContext(cctx)
		if err != nil {
			return 0, fmt.Errorf("wait for confirms: %w", err)
		}
		if !acked {
			return 0, errors.New("the broker nacked a notification")
		}
	}
	p.published.Add(int64(len(confirms)))
	if err := saveCheckpoint(ctx, pool, p.cfg.Name, events[len(events)-1].Position); err != nil {
		return 0, err
	}
	return len(events), nil
}

// publish sends a Committed event's notification (nil for other events and for a
// commit that is passed over).
func (p *Publisher) publish(ctx context.Context, ch *amqp.Channel, e eventstore.RecordedEvent, declared map[uuid.UUID]bool) (*amqp.DeferredConfirmation, error) {
	if e.Type != domain.TypeCommitted {
		return nil, nil
	}
	ev, err := domain.Decode(e.Type, e.Data)
	if err != nil {
		p.log.Error("legacy publisher: undecodable commit passed over", "event", e.ID, "position", e.Position, "err", err)
		return nil, nil
	}
	c, ok := ev.(domain.Committed)
	if !ok {
		if cp, isPtr := ev.(*domain.Committed); isPtr {
			c, ok = *cp, true
		}
	}
	if !ok {
		return nil, nil
	}
	body, err := EncodeEvent(e.ID.String(), MethodNotifyCommit, CommitNotification(c))
	if err == nil && len(body) > p.cfg.MaxMessageBytes {
		err = fmt.Errorf("%d bytes exceed the limit of %d", len(body), p.cfg.MaxMessageBytes)
	}
	if err != nil {
		p.log.Error("legacy publisher: notification passed over", "workspace", c.WorkspaceID, "version", c.WorkspaceVersion, "err", err)
		return nil, nil
	}
	if !declared[c.WorkspaceID] {
		if err := topology.DeclareEventExchange(ch, c.WorkspaceID); err != nil {
			return nil, err
		}
		declared[c.WorkspaceID] = true
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(c.WorkspaceID), "", false, false,
		eventMessage(c.WorkspaceID, e.ID.String(), body))
	if err != nil {
		return nil, fmt.Errorf("publish workspace %s version %d: %w", c.WorkspaceID, c.WorkspaceVersion, err)
	}
	return dc, nil
}

// eventMessage is an event's AMQP message as ObjectMQ publishes one: app_id the
// exchange's id, correlation_id the envelope's id, type java, nothing else.
func eventMessage(to uuid.UUID, id string, body []byte) amqp.Publishing {
	return amqp.Publishing{AppId: to.String(), CorrelationId: id, Type: TypeJava, Body: body}
}
