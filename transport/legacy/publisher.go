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
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/follow"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
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

// checkpoints is the legacy publishers' checkpoint table: a row per publisher name that
// only ever moves forward.
var checkpoints = follow.Table{Name: "legacy_checkpoints"}

// LoadCheckpoint returns the position up to which the publisher name has published.
func LoadCheckpoint(ctx context.Context, db *pgxpool.Pool, name string) (eventstore.Position, error) {
	pos, err := checkpoints.Load(ctx, db, name)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("legacy: %w", err)
	}
	return pos, nil
}

// PublisherConfig configures a Publisher. Start from DefaultPublisherConfig.
type PublisherConfig struct {
	// DSN of the database holding the lock that elects the single active publisher.
	// Required.
	DSN string
	// DB holds the checkpoint (legacy_checkpoints, see Migrate). Required.
	DB *pgxpool.Pool
	// AMQPURL is the legacy broker (its own vhost). Required.
	AMQPURL string
	// Name is the checkpoint row and the leader role.
	Name string
	// Horizon, if set, is the position up to which commits may be published: syncd
	// passes the JSON notifier's checkpoint, so a legacy device is told of a commit no
	// earlier than JSON devices, when reads already show it (PROTOCOL.md §5).
	Horizon func(ctx context.Context) (eventstore.Position, error)
	// Reader reads the global order: syncd passes the process's shared follow.Tail;
	// nil reads the store.
	Reader follow.Reader
	// BatchSize is the most events read at once, BatchBytes the most event data.
	BatchSize  int
	BatchBytes int64
	// MaxMessageBytes: a larger notification is skipped (logged), never published (the
	// broker would close the channel).
	MaxMessageBytes int
	// ConfirmTimeout bounds the wait for a batch's confirms.
	ConfirmTimeout time.Duration
	// PollMin and PollMax bound the adaptive wait while nothing is to be published.
	PollMin, PollMax time.Duration
	// Storage is what a notifyShareProposal tells of Swift (swiftURL; the container is
	// the workspace's id), as getWorkspaces does.
	Storage Storage
	Logger  *slog.Logger
}

// DefaultPublisherConfig returns the defaults; DSN, DB and AMQPURL are left to the
// caller.
func DefaultPublisherConfig() PublisherConfig {
	return PublisherConfig{Name: "legacy-notifier", BatchSize: 256, BatchBytes: 16 << 20, MaxMessageBytes: 128 << 20,
		ConfirmTimeout: 15 * time.Second, PollMin: 5 * time.Millisecond, PollMax: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks c; it changes nothing.
func (c PublisherConfig) Validate() error {
	var errs []error
	if c.DSN == "" || c.DB == nil || c.AMQPURL == "" || c.Name == "" {
		errs = append(errs, errors.New("DSN, DB, AMQPURL and Name are required"))
	}
	if c.BatchSize < 1 || c.BatchBytes < 1 || c.MaxMessageBytes < 1 || c.ConfirmTimeout <= 0 || c.PollMin <= 0 || c.PollMax < c.PollMin {
		errs = append(errs, errors.New("BatchSize, BatchBytes, MaxMessageBytes, ConfirmTimeout and PollMin must be positive, PollMax at least PollMin"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("a Logger is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("legacy publisher: %w", err)
	}
	return nil
}

// Publisher follows the store's global order and publishes every Committed event as
// the legacy notifyCommit (a Java-serialized ObjectMQ Request, type=java) to the
// workspace's fan-out exchange multi#<workspaceId> on the legacy broker, and the
// notifyShareProposals of a share to multi#<userId> (publisher_share.go): only after
// the event is durable (the store returned it), at least once, in order, never beyond
// Horizon, advancing its checkpoint only after the broker confirmed the batch. It runs
// as the single active instance of its name, on the loop every follower of the global
// order runs (internal/follow). A commit whose notification cannot be built or is too
// large is logged and passed over, so that one event never stops the others.
type Publisher struct {
	cfg       PublisherConfig
	log       *slog.Logger
	f         *follow.Follower
	store     eventstore.Store
	published atomic.Int64 // notifications confirmed, for tests and logs
	// shares caches what proposals say of a workspace (publisher_share.go); used from
	// the follower's goroutine only.
	shares map[uuid.UUID]shareinfo.Info
}

// NewPublisher checks cfg; it does no I/O until Run.
func NewPublisher(cfg PublisherConfig, store eventstore.Store) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, log: cfg.Logger.With("component", "legacy-publisher"), store: store, shares: map[uuid.UUID]shareinfo.Info{}}
	fc := follow.DefaultConfig()
	fc.Name, fc.Reader, fc.Logger = "legacy:"+cfg.Name, cfg.Reader, p.log
	if fc.Reader == nil {
		fc.Reader = follow.StoreReader{Store: store}
	}
	fc.BatchSize, fc.BatchBytes, fc.PollMin, fc.PollMax = cfg.BatchSize, cfg.BatchBytes, cfg.PollMin, cfg.PollMax
	fc.Load = func(ctx context.Context) (eventstore.Position, error) { return LoadCheckpoint(ctx, cfg.DB, cfg.Name) }
	fc.Allow = p.allowed
	f, err := follow.New(fc)
	if err != nil {
		return nil, fmt.Errorf("legacy publisher: %w", err)
	}
	p.f = f
	return p, nil
}

// Published returns how many notifications this process has had confirmed.
func (p *Publisher) Published() int64 { return p.published.Load() }

// Wake makes the publisher read at once (syncd calls it after each append).
func (p *Publisher) Wake() { p.f.Wake() }

// Healthy reports a publisher that has made no progress for a while with events
// pending (see follow.Follower.Healthy).
func (p *Publisher) Healthy() error { return p.f.Healthy("legacy publisher") }

// Run publishes while this process holds the role, until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	lc := leader.Config{DSN: p.cfg.DSN, Name: "legacy:" + p.cfg.Name, Logger: p.log}
	return p.f.Lead(ctx, lc, func(ctx context.Context) error {
		return broker.Run(ctx, broker.Config{URL: p.cfg.AMQPURL, Name: "syncd-legacy-publisher", Logger: p.log},
			func(ctx context.Context, conn *amqp.Connection) error {
				err := p.session(ctx, conn)
				if ctx.Err() == nil && err != nil {
					p.f.Failed(err)
					p.log.Warn("legacy publisher: session failed; starting over", "err", err)
					_ = conn.Close() // broker.Run dials again after a back-off
				}
				return err
			})
	})
}

// session publishes on one broker connection until it fails or ctx ends.
func (p *Publisher) session(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	declared := map[uuid.UUID]bool{}
	return p.f.Run(ctx, func(ctx context.Context, batch []eventstore.RecordedEvent) (int, error) {
		return p.publishBatch(ctx, ch, batch, declared)
	})
}

// allowed cuts a batch at the horizon.
func (p *Publisher) allowed(ctx context.Context, evs []eventstore.RecordedEvent) (int, error) {
	if p.cfg.Horizon == nil {
		return len(evs), nil
	}
	h, err := p.cfg.Horizon(ctx)
	if err != nil {
		return 0, fmt.Errorf("horizon: %w", err)
	}
	i := 0
	for i < len(evs) && !h.Less(evs[i].Position) {
		i++
	}
	return i, nil
}

// publishBatch publishes a batch's notifications, waits for the broker's confirms and
// then moves the checkpoint past the batch; it returns how many events it passed.
func (p *Publisher) publishBatch(ctx context.Context, ch *amqp.Channel, events []eventstore.RecordedEvent, declared map[uuid.UUID]bool) (int, error) {
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
	last := events[len(events)-1].Position
	if _, err := checkpoints.Save(ctx, p.cfg.DB, p.cfg.Name, last); err != nil {
		return 0, fmt.Errorf("legacy: %w", err)
	}
	return len(events), nil
}

// publish sends an event's notification: a Committed event's notifyCommit, a share's
// notifyShareProposal; nil for other events and for a notification passed over.
func (p *Publisher) publish(ctx context.Context, ch *amqp.Channel, e eventstore.RecordedEvent, declared map[uuid.UUID]bool) (*amqp.DeferredConfirmation, error) {
	switch e.Type {
	case domain.TypeItemsMovedIn, domain.TypeMemberAdded:
		return p.publishProposal(ctx, ch, e, declared)
	case domain.TypeCommitted:
	default:
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
	// A shared workspace is shown with a root (sharedroot.go).
	info, err := p.shareInfo(ctx, c.WorkspaceID)
	if err != nil {
		return nil, err
	}
	if root, ok := rootOf(c.WorkspaceID, info); ok {
		c = rootCommitted(c, root)
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
