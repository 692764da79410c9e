package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

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

// persist returns the function that writes the first n statements; nil when there are
// none (the checkpoint then moves alone, in one round trip).
func (st *batchState) persist(n int) persistFunc {
	stmts := st.stmts[:n]
	if len(stmts) == 0 {
		return nil
	}
	return func(ctx context.Context, tx pgx.Tx) error {
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
