package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

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
	// BatchBytes bounds the event data of one batch read. Default DefaultBatchBytes.
	BatchBytes int
	// MaxAttempts is how often an event whose broker work the broker refuses for a
	// reason of its own (406 PRECONDITION_FAILED, 405 RESOURCE_LOCKED on a live
	// connection) is tried before it is set aside (notify_set_aside). An event that
	// does not decode is set aside at once; lost connections, access refused (403) and
	// database failures are retried without limit. Default 5.
	MaxAttempts int
	// StallAfter is how long the binder may make no progress while events are pending
	// before Healthy reports it. Default 30s.
	StallAfter time.Duration
	// PollMin and PollMax bound the adaptive wait between reads while idle.
	// Defaults 5ms, 250ms.
	PollMin, PollMax time.Duration
	// RetryMin and RetryMax bound the back-off after a failure. Defaults 100ms, 5s.
	RetryMin, RetryMax time.Duration
	// LeaderRetry is how often a standby instance tries to take over. Default 1s.
	LeaderRetry time.Duration
	// QueueOptions are the arguments of the device queues the binder declares on
	// DeviceRegistered and DeviceUpdated; unset fields take the topology defaults. They
	// must equal the RPC server's (rpc.Config.QueueOptions): a queue that exists with
	// other arguments is kept as it is.
	QueueOptions topology.QueueOptions
	Logger       *slog.Logger
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
	followDefaults(&c.BatchSize, &c.PollMin, &c.PollMax, &c.RetryMin, &c.RetryMax, &c.LeaderRetry, &c.Logger,
		5*time.Millisecond, 250*time.Millisecond)
	isolationDefaults(&c.BatchBytes, &c.MaxAttempts, &c.StallAfter)
	return nil
}

// Binder keeps the device event queues bound in step with workspace membership
// (PROTOCOL.md §1, §6). It follows the store's global order and keeps its own tables of
// memberships and devices (binder_members, binder_devices), changed in the transaction
// that moves its checkpoint, after the broker work of the batch succeeded:
//
//   - WorkspaceCreated (the owner) and MemberAdded bind the queue events.<user>.<device>
//     of every device of the user to multi#<workspace>; MemberRemoved unbinds them;
//   - DeviceRegistered and DeviceUpdated declare the device's queue (unless the event is
//     older than the queue expiry: then only an existing queue is bound) and bind it to
//     multi#<user> and to every workspace the user is a member of at that point of the
//     global order. With the previous rule this binds every (device, workspace) pair,
//     whatever the order in which a registration and a membership reached the RPC
//     server's read model;
//   - UserRemoved unbinds the user's devices from the user's workspaces and forgets them.
//
// On every new broker connection it checks the topology marker (topology.Marker). When
// the marker is missing (a fresh broker, or one that restarted and lost its
// non-durable exchanges and with them every binding), it binds every existing device
// queue of its tables again and only then declares the marker, which notifiers wait for.
//
// Membership bindings skip device queues that do not exist (a device that never called
// updateDevice, or whose queue expired): updateDevice declares and binds them.
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
			name: cfg.Name, store: store, batch: cfg.BatchSize, batchBytes: cfg.BatchBytes, read: readAllBounded,
			maxAttempts: cfg.MaxAttempts, stallAfter: cfg.StallAfter,
			pollMin: cfg.PollMin, pollMax: cfg.PollMax, retryMin: cfg.RetryMin, retryMax: cfg.RetryMax,
			log: log, kick: make(chan struct{}, 1),
		},
	}, nil
}

// Status reports the binder's progress.
func (b *Binder) Status() Status { return b.f.snapshot() }

// Healthy returns nil while the binder makes progress (or has nothing to do, or is a
// standby), and an error naming it, its checkpoint and its last error when it has made
// no progress for longer than BinderConfig.StallAfter while events are pending.
func (b *Binder) Healthy() error { return b.f.healthy("binder") }

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
			if err := b.f.retry(ctx, "prepare tables", func(ctx context.Context) error {
				return b.prepareTables(ctx, pool)
			}); err != nil {
				return err
			}
			b.f.lead(true)
			defer b.f.lead(false)
			bc := broker.Config{URL: b.cfg.AMQPURL, Name: "syncd-" + b.cfg.Name, MinBackoff: b.cfg.RetryMin, MaxBackoff: b.cfg.RetryMax, Logger: b.log}
			return broker.Run(ctx, bc, b.session)
		})
}

// prepareTables makes sure the binder's tables are built from the start of the store: a
// binder that ran before they existed has a checkpoint but no binder_tables row, and
// follows the store again from the start.
func (b *Binder) prepareTables(ctx context.Context, db *pgxpool.Pool) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `INSERT INTO binder_tables (binder) VALUES ($1) ON CONFLICT (binder) DO NOTHING`, b.cfg.Name)
	if err != nil {
		return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return nil // built already
	}
	for _, q := range []string{
		`DELETE FROM notify_checkpoints WHERE name = $1`,
		`DELETE FROM binder_members WHERE binder = $1`,
		`DELETE FROM binder_devices WHERE binder = $1`,
	} {
		if _, err := tx.Exec(ctx, q, b.cfg.Name); err != nil {
			return fmt.Errorf("binder %s: prepare tables: %w", b.cfg.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("binder %s: prepare tables: commit: %w", b.cfg.Name, err)
	}
	b.log.Info("membership tables are new: following the store from the start to fill them")
	return nil
}

// session works on one broker connection: it restores the bindings if the broker lost
// them, then follows the store.
func (b *Binder) session(ctx context.Context, conn *amqp.Connection) error {
	if err := b.ensureTopology(ctx, conn); err != nil {
		return err
	}
	return b.f.onConnection(ctx, conn, "binding", func() (handler, func(), error) {
		ch := &channels{conn: conn, opts: b.cfg.QueueOptions}
		return func(ctx context.Context, evs []eventstore.RecordedEvent) (int, persistFunc, error) {
			return b.apply(ctx, ch, evs)
		}, ch.close, nil
	})
}

// ensureTopology checks the topology marker and, when it is missing, restores every
// binding of the binder's tables and then declares it. Failures are retried with
// back-off while the connection lives.
func (b *Binder) ensureTopology(ctx context.Context, conn *amqp.Connection) error {
	backoff := b.cfg.RetryMin
	for {
		ok, err := topology.MarkerExists(conn)
		if err == nil && ok {
			return nil
		}
		if err == nil {
			err = b.restore(ctx, conn)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil || conn.IsClosed() {
			return err
		}
		b.f.failed(err)
		b.log.Warn("restoring the bindings failed; retrying", "err", err, "in", backoff)
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, b.cfg.RetryMax)
	}
}

// deviceBindings is one device of the binder's tables with the workspaces of its user.
type deviceBindings struct {
	user, device uuid.UUID
	workspaces   []uuid.UUID
}

// restoreWorkers is how many channels a restore uses at once (the broker serves
// channels concurrently; each bind is a round trip).
const restoreWorkers = 8

// restore binds every existing device queue of the binder's tables to its user's
// exchange and to the exchanges of its user's workspaces, then declares the marker. It
// declares each exchange once, then binds the queues on restoreWorkers channels; a queue
// that no longer exists (expired) is passed over: the device's next updateDevice
// declares and binds it.
func (b *Binder) restore(ctx context.Context, conn *amqp.Connection) error {
	began := time.Now()
	var devs []deviceBindings
	if err := b.f.retry(ctx, "read membership tables", func(ctx context.Context) error {
		var err error
		devs, err = loadBindings(ctx, b.f.db, b.cfg.Name)
		return err
	}); err != nil {
		return err
	}
	b.log.Info("topology marker missing (fresh or restarted broker): restoring device queue bindings", "devices", len(devs))
	seen := map[uuid.UUID]bool{}
	var exchanges []uuid.UUID
	for _, d := range devs {
		for _, id := range append([]uuid.UUID{d.user}, d.workspaces...) {
			if !seen[id] {
				seen[id] = true
				exchanges = append(exchanges, id)
			}
		}
	}
	if err := inParallel(ctx, conn, len(exchanges), func(c *channels, i int) error {
		ch, err := c.get()
		if err != nil {
			return err
		}
		return topology.DeclareEventExchange(ch, exchanges[i])
	}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var missing, bindings atomic.Int64
	if err := inParallel(ctx, conn, len(devs), func(c *channels, i int) error {
		d := devs[i]
		for j, id := range append([]uuid.UUID{d.user}, d.workspaces...) {
			ch, err := c.get()
			if err != nil {
				return err
			}
			q := topology.DeviceQueue(d.user, d.device)
			if err := ch.QueueBind(q, "", topology.EventExchange(id), false, nil); err != nil {
				if notFound(err) && j == 0 {
					missing.Add(1) // the queue expired (every exchange exists by now)
					return nil
				}
				return fmt.Errorf("bind %s to %s: %w", q, topology.EventExchange(id), err)
			}
			bindings.Add(1)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("restore: open channel: %w", err)
	}
	defer ch.Close()
	if err := topology.DeclareMarker(ch); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	b.f.update(func(s *Status) { s.Restores++ })
	b.log.Info("device queue bindings restored; topology marker declared", "devices", len(devs), "exchanges", len(exchanges),
		"without_queue", missing.Load(), "bindings", bindings.Load(), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// inParallel calls fn(c, i) for every i in [0, n) on restoreWorkers workers, each with
// channels of its own on conn, and returns the first error.
func inParallel(ctx context.Context, conn *amqp.Connection, n int, fn func(c *channels, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range min(restoreWorkers, n) {
		g.Go(func() error {
			c := &channels{conn: conn}
			defer c.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := fn(c, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// loadBindings reads every device of the binder's tables with its user's workspaces.
func loadBindings(ctx context.Context, db *pgxpool.Pool, binder string) ([]deviceBindings, error) {
	rows, err := db.Query(ctx, `SELECT d.user_id, d.device,
			coalesce(array_agg(m.workspace ORDER BY m.workspace) FILTER (WHERE m.workspace IS NOT NULL), '{}')
		FROM binder_devices d
		LEFT JOIN binder_members m ON m.binder = d.binder AND m.user_id = d.user_id
		WHERE d.binder = $1
		GROUP BY d.user_id, d.device
		ORDER BY d.user_id, d.device`, binder)
	if err != nil {
		return nil, fmt.Errorf("read tables of binder %s: %w", binder, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deviceBindings, error) {
		var d deviceBindings
		err := r.Scan(&d.user, &d.device, &d.workspaces)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tables of binder %s: %w", binder, err)
	}
	return out, nil
}

// batchState is the binder's tables as seen by one batch: the rows of the users the
// batch touched, loaded on first use and changed in memory as the batch goes, plus the
// statements that make the same changes in the database with the checkpoint.
type batchState struct {
	b       *Binder
	members map[uuid.UUID]map[uuid.UUID]bool // user → workspaces
	devices map[uuid.UUID]map[uuid.UUID]bool // user → devices
	stmts   []stmt
}

type stmt struct {
	sql  string
	args []any
}

func (st *batchState) exec(sql string, args ...any) {
	st.stmts = append(st.stmts, stmt{sql, append([]any{st.b.cfg.Name}, args...)})
}

// load reads the user's rows of the tables unless this batch has them already.
func (st *batchState) load(ctx context.Context, user uuid.UUID) error {
	if _, ok := st.members[user]; ok {
		return nil
	}
	ms, ds := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	err := st.b.f.retry(ctx, "read membership tables", func(ctx context.Context) error {
		clear(ms)
		clear(ds)
		rows, err := st.b.f.db.Query(ctx, `SELECT true, workspace FROM binder_members WHERE binder = $1 AND user_id = $2
			UNION ALL SELECT false, device FROM binder_devices WHERE binder = $1 AND user_id = $2`, st.b.cfg.Name, user)
		if err != nil {
			return fmt.Errorf("read tables for user %s: %w", user, err)
		}
		var member bool
		var id uuid.UUID
		_, err = pgx.ForEachRow(rows, []any{&member, &id}, func() error {
			if member {
				ms[id] = true
			} else {
				ds[id] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read tables for user %s: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.members[user], st.devices[user] = ms, ds
	return nil
}

// persist returns the function that writes the first n statements.
func (st *batchState) persist(n int) persistFunc {
	stmts := st.stmts[:n]
	return func(ctx context.Context, tx pgx.Tx) error {
		if len(stmts) == 0 {
			return nil
		}
		batch := &pgx.Batch{}
		for _, s := range stmts {
			batch.Queue(s.sql, s.args...)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("update membership tables: %w", err)
		}
		return nil
	}
}

// apply does the broker work of a batch, every binding change in order, and returns how
// many events are done and the changes of the binder's tables to save with the
// checkpoint past them. A failure the broker gives for the event itself (refusedFor) is
// marked poison.
func (b *Binder) apply(ctx context.Context, ch *channels, evs []eventstore.RecordedEvent) (int, persistFunc, error) {
	st := &batchState{b: b, members: map[uuid.UUID]map[uuid.UUID]bool{}, devices: map[uuid.UUID]map[uuid.UUID]bool{}}
	for i, rec := range evs {
		if err := b.applyOne(ctx, ch, st, rec); err != nil {
			err = fmt.Errorf("binder %s: event %s: %w", b.cfg.Name, rec.ID, err)
			if refusedFor(err) && !ch.conn.IsClosed() {
				err = poison(err)
			}
			// The statements so far belong to evs[:i]: the tables load rows per user and
			// an event's statements are queued only after its broker work succeeded.
			return i, st.persist(len(st.stmts)), err
		}
	}
	return len(evs), st.persist(len(st.stmts)), nil
}

// refusedFor reports a broker refusal of the object an event names, as opposed to a
// failure of the broker, the connection or the server's permissions.
func refusedFor(err error) bool {
	return amqpCode(err, amqp.PreconditionFailed) || amqpCode(err, amqp.ResourceLocked)
}

func (b *Binder) applyOne(ctx context.Context, ch *channels, st *batchState, rec eventstore.RecordedEvent) error {
	switch rec.Type {
	case domain.TypeWorkspaceCreated, domain.TypeMemberAdded, domain.TypeMemberRemoved:
		m, ok, err := membershipOf(rec)
		if err != nil || !ok {
			b.skip(rec, err)
			return nil
		}
		return b.applyMembership(ctx, ch, st, m)
	case domain.TypeDeviceRegistered, domain.TypeDeviceUpdated, domain.TypeDeviceRemoved, domain.TypeUserRemoved:
	default:
		return nil
	}
	ev, err := domain.Decode(rec.Type, rec.Data)
	if err != nil {
		b.skip(rec, err)
		return nil
	}
	switch e := ev.(type) {
	case domain.DeviceRegistered:
		return b.applyDevice(ctx, ch, st, rec, e.UserID, e.DeviceID)
	case domain.DeviceUpdated:
		return b.applyDevice(ctx, ch, st, rec, e.UserID, e.DeviceID)
	case domain.DeviceRemoved:
		return b.applyDeviceRemoved(ctx, ch, st, e.UserID, e.DeviceID)
	case domain.UserRemoved:
		return b.applyUserRemoved(ctx, ch, st, e.UserID)
	default:
		b.skip(rec, fmt.Errorf("decoded as %T", ev))
		return nil
	}
}

// skip sets aside a membership or device event that cannot be read: it is recorded
// (notify_set_aside) and logged with the checkpoint that moves past it.
func (b *Binder) skip(rec eventstore.RecordedEvent, err error) {
	if err == nil {
		err = errors.New("not a membership event")
	}
	b.f.setAside(rec, fmt.Errorf("binder %s: cannot read event %s: %w", b.cfg.Name, rec.ID, err), 1)
}

func (b *Binder) applyMembership(ctx context.Context, ch *channels, st *batchState, m membership) error {
	if m.member {
		// During a catch-up, a later event may already have ended the membership: then
		// binding (or recording it) now would let the ex-member read events until the
		// binder reaches that removal.
		var still bool
		if err := b.f.retry(ctx, "read membership", func(ctx context.Context) error {
			var err error
			still, err = stillMember(ctx, b.store, m)
			return err
		}); err != nil {
			return err
		}
		if !still {
			return nil
		}
	}
	if err := st.load(ctx, m.user); err != nil {
		return err
	}
	devs := st.devices[m.user]
	for dev := range devs {
		var err error
		if m.member {
			err = ch.bind(m.user, dev, m.workspace)
		} else {
			err = ch.unbind(m.user, dev, m.workspace)
		}
		if err != nil {
			return err
		}
	}
	if m.member {
		st.members[m.user][m.workspace] = true
		st.exec(`INSERT INTO binder_members (binder, workspace, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, m.workspace, m.user)
	} else {
		delete(st.members[m.user], m.workspace)
		st.exec(`DELETE FROM binder_members WHERE binder = $1 AND workspace = $2 AND user_id = $3`, m.workspace, m.user)
	}
	b.log.Debug("membership applied", "workspace", m.workspace, "user", m.user, "member", m.member, "devices", len(devs))
	return nil
}

// applyDevice records a device and binds its queue to the user's exchange and to every
// workspace of the user. The queue is declared when the event is younger than the queue
// expiry (the device is alive and its updateDevice may not have declared the queue
// yet); for an older event (a catch-up from far behind) only an existing queue is
// bound, so that queues which expired unused are not brought back.
func (b *Binder) applyDevice(ctx context.Context, ch *channels, st *batchState, rec eventstore.RecordedEvent, user, dev uuid.UUID) error {
	if user == uuid.Nil || dev == uuid.Nil {
		b.skip(rec, errors.New("device event without a user or device id"))
		return nil
	}
	if err := st.load(ctx, user); err != nil {
		return err
	}
	var exists bool
	var err error
	if time.Since(rec.RecordedAt) < b.cfg.QueueOptions.WithDefaults().Expiry {
		exists, err = ch.declareQueue(user, dev)
	} else {
		exists, err = ch.queueExists(user, dev)
	}
	if err != nil {
		return err
	}
	ids := []uuid.UUID{user}
	for ws := range st.members[user] {
		ids = append(ids, ws)
	}
	if exists {
		if _, err := ch.bindAll(user, dev, ids); err != nil {
			return err
		}
	}
	st.devices[user][dev] = true
	st.exec(`INSERT INTO binder_devices (binder, user_id, device) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, user, dev)
	b.log.Debug("device applied", "user", user, "device", dev, "queue", exists, "workspaces", len(ids)-1)
	return nil
}

// applyUserRemoved unbinds a removed user's device queues from the user's workspaces
// and forgets the user's devices and memberships.
func (b *Binder) applyUserRemoved(ctx context.Context, ch *channels, st *batchState, user uuid.UUID) error {
	if err := st.load(ctx, user); err != nil {
		return err
	}
	for dev := range st.devices[user] {
		for ws := range st.members[user] {
			if err := ch.unbind(user, dev, ws); err != nil {
				return err
			}
		}
	}
	clear(st.members[user])
	clear(st.devices[user])
	st.exec(`DELETE FROM binder_members WHERE binder = $1 AND user_id = $2`, user)
	st.exec(`DELETE FROM binder_devices WHERE binder = $1 AND user_id = $2`, user)
	b.log.Debug("user removed", "user", user)
	return nil
}

// applyDeviceRemoved deletes a removed device's queue (with its bindings and waiting
// events) and forgets the device, so nothing is fanned out to it any more.
func (b *Binder) applyDeviceRemoved(ctx context.Context, ch *channels, st *batchState, user, dev uuid.UUID) error {
	if err := st.load(ctx, user); err != nil {
		return err
	}
	if err := ch.deleteQueue(user, dev); err != nil {
		return err
	}
	delete(st.devices[user], dev)
	st.exec(`DELETE FROM binder_devices WHERE binder = $1 AND user_id = $2 AND device = $3`, user, dev)
	b.log.Debug("device removed", "user", user, "device", dev)
	return nil
}

// membership is a change of one user's membership of one workspace.
type membership struct {
	workspace, user uuid.UUID
	member          bool
	streamVersion   uint64 // of the event in the workspace stream
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

// streamPage and streamPageBytes bound one page of a stream read: in events, and in
// event data (a commit event may hold up to eventstore.MaxRecordSize).
const (
	streamPage      = 1000
	streamPageBytes = 16 << 20
)

// stillMember reports whether the membership m added is still in force at the end of the
// workspace stream: no later event of the stream removed the user (or removed and
// re-added them, which counts as in force). It reads the rest of the stream in pages
// bounded in bytes (the store contract has no read by event type), so memory stays
// within streamPageBytes plus one event whatever the commits after m hold.
func stillMember(ctx context.Context, s eventstore.Store, m membership) (bool, error) {
	stream := domain.WorkspaceStream(m.workspace)
	member := true
	for from := m.streamVersion + 1; ; {
		evs, err := eventstore.ReadStreamBounded(ctx, s, stream, from, streamPage, streamPageBytes)
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
		if !eventstore.MayHaveMore(evs, streamPage, streamPageBytes) {
			return member, nil
		}
		from = evs[len(evs)-1].StreamVersion + 1
	}
}

// channels hands out a channel on conn, replacing it after the broker closed it (as it
// does on a 404 for a missing queue or exchange).
type channels struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	opts topology.QueueOptions
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

// amqpCode reports whether err is the broker's answer code.
func amqpCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// notFound reports the broker's 404: the queue (or exchange) does not exist.
func notFound(err error) bool { return amqpCode(err, amqp.NotFound) }

// queueExists checks for the device's queue with a passive declare.
func (c *channels) queueExists(user, device uuid.UUID) (bool, error) {
	ch, err := c.get()
	if err != nil {
		return false, err
	}
	q := topology.DeviceQueue(user, device)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("check queue %s: %w", q, err)
	}
	return true, nil
}

// declareQueue declares the device's queue with c.opts. A queue that exists with other
// arguments (an operator changed the limits) is kept as it is, as the RPC server does.
func (c *channels) declareQueue(user, device uuid.UUID) (bool, error) {
	ch, err := c.get()
	if err != nil {
		return false, err
	}
	err = topology.DeclareQueue(ch, user, device, c.opts)
	if amqpCode(err, amqp.PreconditionFailed) {
		return c.queueExists(user, device)
	}
	return err == nil, err
}

// bindAll binds the device's existing queue to the exchange of every id (declaring the
// exchanges) and returns how many bindings it made; it stops without error if the queue
// vanished in between (expired).
func (c *channels) bindAll(user, device uuid.UUID, ids []uuid.UUID) (int, error) {
	ch, err := c.get()
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := topology.Bind(ch, user, device, id); err != nil {
			if notFound(err) {
				return i, nil
			}
			return i, err
		}
	}
	return len(ids), nil
}

// bind binds the device's queue to the workspace's exchange if the queue exists.
func (c *channels) bind(user, device, workspace uuid.UUID) error {
	exists, err := c.queueExists(user, device)
	if err != nil || !exists {
		return err // no queue: updateDevice will declare and bind it
	}
	_, err = c.bindAll(user, device, []uuid.UUID{workspace})
	return err
}

// deleteQueue deletes the device's queue; one that does not exist is already gone.
func (c *channels) deleteQueue(user, device uuid.UUID) error {
	ch, err := c.get()
	if err != nil {
		return err
	}
	q := topology.DeviceQueue(user, device)
	if _, err := ch.QueueDelete(q, false, false, false); err != nil && !notFound(err) {
		return fmt.Errorf("delete queue %s: %w", q, err)
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
