package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/leader"
	"github.com/stacksync-es/syncservice/transport/broker"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// BinderConfig configures a Binder.
type BinderConfig struct {
	// DSN of the PostgreSQL database holding the checkpoint table and the advisory lock
	// that elects the single active binder. Required.
	DSN string
	// AMQPURL is the broker whose bindings are kept. Required.
	AMQPURL string
	// Name is the checkpoint row and the leader role. Default "binder".
	Name string
	// BatchSize is the most events read and applied as one batch. Default 256.
	BatchSize int
	// PollMin and PollMax bound the adaptive wait between reads while idle.
	// Defaults 5ms, 250ms.
	PollMin, PollMax time.Duration
	// RetryMin and RetryMax bound the back-off after a failure. Defaults 100ms, 5s.
	RetryMin, RetryMax time.Duration
	// LeaderRetry is how often a standby instance tries to take over. Default 1s.
	LeaderRetry time.Duration
	Logger      *slog.Logger
}

// Validate fills defaults and checks required fields.
func (c *BinderConfig) Validate() error {
	if c.DSN == "" {
		return errors.New("binder: DSN is required")
	}
	if c.AMQPURL == "" {
		return errors.New("binder: AMQPURL is required")
	}
	if c.Name == "" {
		c.Name = "binder"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.PollMin <= 0 {
		c.PollMin = 5 * time.Millisecond
	}
	if c.PollMax <= 0 {
		c.PollMax = 250 * time.Millisecond
	}
	if c.PollMax < c.PollMin {
		c.PollMax = c.PollMin
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.LeaderRetry <= 0 {
		c.LeaderRetry = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Binder keeps the device event queues bound in step with workspace membership
// (PROTOCOL.md §1, §6). Following the store's global order, on WorkspaceCreated (the
// owner) and MemberAdded it binds the queue events.<user>.<device> of every device
// registered to the user to multi#<workspace>; on MemberRemoved it unbinds them. Device
// registration itself needs nothing: the RPC server declares and binds a device's queue
// when the device calls updateDevice. Queues that do not exist (a device that never
// called updateDevice, or whose queue expired) are passed over.
type Binder struct {
	cfg   BinderConfig
	store eventstore.Store
	log   *slog.Logger
	f     *follower
}

// NewBinder checks cfg and returns a Binder; it does no I/O until Run.
func NewBinder(cfg BinderConfig, store eventstore.Store) (*Binder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("binder: store is required")
	}
	log := cfg.Logger.With("component", "binder", "name", cfg.Name)
	return &Binder{
		cfg: cfg, store: store, log: log,
		f: &follower{
			name: cfg.Name, store: store, batch: cfg.BatchSize,
			pollMin: cfg.PollMin, pollMax: cfg.PollMax, retryMin: cfg.RetryMin, retryMax: cfg.RetryMax,
			log: log, kick: make(chan struct{}, 1),
		},
	}, nil
}

// Status reports the binder's progress.
func (b *Binder) Status() Status { return b.f.snapshot() }

// Wake makes an idle binder read the store now (a latency hint only).
func (b *Binder) Wake() { b.f.wake() }

// Run keeps bindings until ctx ends, then returns ctx.Err(). It waits as a standby while
// another instance holds the role, and outlives broker and database restarts.
func (b *Binder) Run(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, b.cfg.DSN)
	if err != nil {
		return fmt.Errorf("binder %s: open database: %w", b.cfg.Name, err)
	}
	defer pool.Close()
	b.f.db = pool
	return leader.Run(ctx, leader.Config{DSN: b.cfg.DSN, Name: b.cfg.Name, Retry: b.cfg.LeaderRetry, Logger: b.log},
		func(ctx context.Context) error {
			if err := Migrate(ctx, pool); err != nil {
				return err
			}
			b.f.update(func(s *Status) { s.Leader = true })
			defer b.f.update(func(s *Status) { s.Leader = false })
			bc := broker.Config{URL: b.cfg.AMQPURL, Name: "syncd-" + b.cfg.Name, MinBackoff: b.cfg.RetryMin, MaxBackoff: b.cfg.RetryMax, Logger: b.log}
			return broker.Run(ctx, bc, func(ctx context.Context, conn *amqp.Connection) error {
				return b.f.onConnection(ctx, conn, "binding", func() (handler, func(), error) {
					ch := &channels{conn: conn}
					return func(ctx context.Context, evs []eventstore.RecordedEvent) error {
						return b.apply(ctx, ch, evs)
					}, ch.close, nil
				})
			})
		})
}

// membership is a change of one user's membership of one workspace.
type membership struct {
	workspace, user uuid.UUID
	member          bool
	streamVersion   uint64 // of the event in the workspace stream
}

// apply does the broker work of a batch: every binding change, in order.
func (b *Binder) apply(ctx context.Context, ch *channels, evs []eventstore.RecordedEvent) error {
	type userInfo struct {
		devices []uuid.UUID
		removed bool
	}
	users := map[uuid.UUID]userInfo{} // read once per batch
	for _, rec := range evs {
		m, ok, err := membershipOf(rec)
		if err != nil {
			b.log.Error("cannot read a stored membership event; skipping it", "event", rec.ID, "stream", rec.Stream, "err", err)
			b.f.update(func(s *Status) { s.Skipped++ })
			continue
		}
		if !ok {
			continue
		}
		if m.member {
			// During a catch-up, a later event may already have ended the membership:
			// then binding now would let the ex-member read events until the binder
			// reaches that removal.
			var still bool
			if err := b.f.retry(ctx, "read membership", func(ctx context.Context) error {
				var err error
				still, err = stillMember(ctx, b.store, m)
				return err
			}); err != nil {
				return err
			}
			if !still {
				continue
			}
		}
		u, seen := users[m.user]
		if !seen {
			if err := b.f.retry(ctx, "read devices", func(ctx context.Context) error {
				var err error
				u.devices, u.removed, err = userDevices(ctx, b.store, m.user)
				return err
			}); err != nil {
				return err
			}
			users[m.user] = u
		}
		if m.member && u.removed {
			continue // a removed user's devices get no new bindings
		}
		for _, dev := range u.devices {
			var err error
			if m.member {
				err = ch.bind(m.user, dev, m.workspace)
			} else {
				err = ch.unbind(m.user, dev, m.workspace)
			}
			if err != nil {
				return fmt.Errorf("event %s: %w", rec.ID, err)
			}
		}
		b.log.Debug("membership applied", "workspace", m.workspace, "user", m.user, "member", m.member, "devices", len(u.devices))
	}
	return nil
}

// membershipOf reads the membership change a stored event records, if any.
func membershipOf(rec eventstore.RecordedEvent) (membership, bool, error) {
	switch rec.Type {
	case domain.TypeWorkspaceCreated, domain.TypeMemberAdded, domain.TypeMemberRemoved:
	default:
		return membership{}, false, nil
	}
	ev, err := domain.Decode(rec.Type, rec.Data)
	if err != nil {
		return membership{}, false, err
	}
	m := membership{streamVersion: rec.StreamVersion}
	switch e := ev.(type) {
	case domain.WorkspaceCreated:
		m.workspace, m.user, m.member = e.WorkspaceID, e.OwnerID, true
	case domain.MemberAdded:
		m.workspace, m.user, m.member = e.WorkspaceID, e.UserID, true
	case domain.MemberRemoved:
		m.workspace, m.user = e.WorkspaceID, e.UserID
	default:
		return membership{}, false, fmt.Errorf("event %s decoded as %T", rec.ID, ev)
	}
	if m.workspace == uuid.Nil || m.user == uuid.Nil {
		return membership{}, false, fmt.Errorf("event %s: membership without a workspace or user id", rec.ID)
	}
	return m, true, nil
}

// streamPage is the page size of stream reads.
const streamPage = 1000

// stillMember reports whether the membership m added is still in force at the end of the
// workspace stream: no later event of the stream removed the user (or removed and
// re-added them, which counts as in force).
func stillMember(ctx context.Context, s eventstore.Store, m membership) (bool, error) {
	stream := domain.WorkspaceStream(m.workspace)
	member := true
	for from := m.streamVersion + 1; ; {
		evs, err := s.ReadStream(ctx, stream, from, streamPage)
		if err != nil {
			return false, fmt.Errorf("read %s from %d: %w", stream, from, err)
		}
		for _, rec := range evs {
			if rec.Type != domain.TypeMemberAdded && rec.Type != domain.TypeMemberRemoved {
				continue
			}
			later, ok, err := membershipOf(rec)
			if err != nil || !ok || later.user != m.user || later.workspace != m.workspace {
				continue
			}
			member = later.member
		}
		if len(evs) < streamPage {
			return member, nil
		}
		from = evs[len(evs)-1].StreamVersion + 1
	}
}

// userDevices lists the devices registered to user, folded from the user's stream, and
// reports whether the user has been removed (whose devices are no longer valid).
func userDevices(ctx context.Context, s eventstore.Store, user uuid.UUID) (devices []uuid.UUID, removed bool, err error) {
	stream := domain.UserStream(user)
	u := domain.NewUser(user)
	for from := uint64(1); ; {
		evs, err := s.ReadStream(ctx, stream, from, streamPage)
		if err != nil {
			return nil, false, fmt.Errorf("read %s from %d: %w", stream, from, err)
		}
		for _, rec := range evs {
			ev, err := domain.Decode(rec.Type, rec.Data)
			if err != nil {
				continue // an event this version cannot read changes no device
			}
			u.Evolve(ev)
		}
		if len(evs) < streamPage {
			break
		}
		from = evs[len(evs)-1].StreamVersion + 1
	}
	devs := u.Devices()
	out := make([]uuid.UUID, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out, u.Removed(), nil
}

// channels hands out a channel on conn, replacing it after the broker closed it (as it
// does on a 404 for a missing queue or exchange).
type channels struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (c *channels) get() (*amqp.Channel, error) {
	if c.ch != nil && !c.ch.IsClosed() {
		return c.ch, nil
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	c.ch = ch
	return ch, nil
}

func (c *channels) close() {
	if c.ch != nil {
		_ = c.ch.Close()
		c.ch = nil
	}
}

// notFound reports the broker's 404: the queue (or exchange) does not exist.
func notFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// bind binds the device's queue to the workspace's exchange if the queue exists.
func (c *channels) bind(user, device, workspace uuid.UUID) error {
	ch, err := c.get()
	if err != nil {
		return err
	}
	q := topology.DeviceQueue(user, device)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		if notFound(err) {
			return nil // no queue yet: updateDevice will declare and bind it
		}
		return fmt.Errorf("check queue %s: %w", q, err)
	}
	if err := topology.Bind(ch, user, device, workspace); err != nil {
		if notFound(err) {
			return nil // the queue expired in between
		}
		return err
	}
	return nil
}

// unbind removes the device queue's binding to the workspace's exchange; a queue or
// exchange that does not exist has no binding to remove.
func (c *channels) unbind(user, device, workspace uuid.UUID) error {
	ch, err := c.get()
	if err != nil {
		return err
	}
	if err := topology.Unbind(ch, user, device, workspace); err != nil && !notFound(err) {
		return err
	}
	return nil
}
