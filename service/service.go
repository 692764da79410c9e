package service

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
)

// ReadModel is what the service asks of the read models: projections.Queries over the
// PostgreSQL tables in a server, an in-memory model in unit tests.
type ReadModel interface {
	Changes(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, int64, error)
	ChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error)
	ItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error)
	// ItemWorkspace finds the workspace holding item (ids are unique across
	// workspaces), uuid.Nil if none, and whether user is a current member of it.
	ItemWorkspace(ctx context.Context, item domain.ItemID, user uuid.UUID) (ws uuid.UUID, member bool, err error)
	// WorkspacesOf lists the user's workspaces, the personal one first.
	WorkspacesOf(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error)
	// Membership tells whether the workspace exists and whether user is a member.
	Membership(ctx context.Context, ws, user uuid.UUID) (exists, member bool, err error)
	// AccountByEmail finds a user (not removed) by e-mail; ok false if there is none.
	AccountByEmail(ctx context.Context, email string) (acct protocol.Account, ok bool, err error)
	// OwnerUsageExcept sums the used bytes of the workspaces owner owns, except the one
	// named (uuid.Nil: all of them).
	OwnerUsageExcept(ctx context.Context, owner, except uuid.UUID) (int64, error)
	// Transient reports whether a failed read is worth trying again (a lost connection,
	// a server shutting a session down): reads change nothing, so the service retries
	// them a few times.
	Transient(err error) bool
}

// IDAllocator hands out fresh item ids, unique across every process of the service
// (internal/itemids: blocks reserved in PostgreSQL in a server, a counter in unit tests).
type IDAllocator interface {
	// Take returns n ids never handed out before.
	Take(ctx context.Context, n int) ([]domain.ItemID, error)
}

// Config configures a Service. Start from DefaultConfig: a zero numeric field, a nil
// Logger or Now take their defaults in New, but a boolean is what it says (GroupCommit
// is on only if set, as DefaultConfig does).
type Config struct {
	// CacheSize bounds the aggregates kept in memory. Default 4096.
	CacheSize int
	// MaxAttempts bounds the decide-append attempts of one command under concurrent
	// appends before it is answered Busy. Default 20.
	MaxAttempts int
	// BusyRetryAfter is the retry delay suggested with Busy. Default 200ms.
	BusyRetryAfter time.Duration
	// UserStaleness is how old a cached user state (devices, quota limit, removal, and
	// the bytes the owner uses in other workspaces) may
	// be when a commit checks the device and the owner's limit; older ones are caught up
	// with the user's stream first. A device registered or a user removed through
	// another process is seen within this time. Default 1s; negative: always catch up.
	UserStaleness time.Duration
	Logger        *slog.Logger
	// Now is the clock; default time.Now. Tests may fix it.
	Now func() time.Time
	// GroupCommit, when the store supports it (eventstore.BatchAppender), writes
	// concurrent commands' appends to different streams in shared transactions.
	// DefaultConfig turns it on.
	GroupCommit bool
	// MaxCommitBatch bounds how many commits waiting for one workspace in this process
	// are decided one after another and appended together, as one append of several
	// events (a batch also stays within maxBatchBytes of event data). 1 decides and
	// appends each commit alone. Default 64.
	MaxCommitBatch int
	// OnAppend, if set, is called after every successful append (a latency hint for
	// in-process followers such as the notifier; it must not block).
	OnAppend func()
	// OnCommitted, if set, is called after each commit this process appended, while the
	// workspace is still held, so in workspaceVersion order per workspace (syncd
	// publishes the notification from here; see notify.Direct). It must not block for
	// long: other commands on the workspace wait.
	OnCommitted func(ctx context.Context, c AppendedCommit)
	// Limits are the protocol's limits (PROTOCOL.md §4) the domain enforces: devices per
	// user, chunks per item, folder depth, items per commit, and the size of one event.
	// Zero fields take domain.DefaultLimits, except MaxEventBytes, which defaults to (and
	// may not exceed) eventstore.MaxRecordSize.
	Limits domain.Limits
}

// DefaultConfig returns the defaults of every field.
func DefaultConfig() Config {
	lim := domain.DefaultLimits()
	lim.MaxEventBytes = eventstore.MaxRecordSize
	return Config{
		CacheSize:      4096,
		MaxAttempts:    20,
		BusyRetryAfter: 200 * time.Millisecond,
		UserStaleness:  time.Second,
		Logger:         slog.New(slog.DiscardHandler),
		Now:            time.Now,
		GroupCommit:    true,
		MaxCommitBatch: 64,
		Limits:         lim,
	}
}

// withDefaults returns c with every zero numeric field (and a nil Logger or Now) set
// from DefaultConfig. Booleans are left as they are.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Limits.MaxEventBytes == 0 {
		c.Limits.MaxEventBytes = d.Limits.MaxEventBytes
	}
	c.Limits = c.Limits.WithDefaults()
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.MaxCommitBatch == 0 {
		c.MaxCommitBatch = d.MaxCommitBatch
	}
	if c.BusyRetryAfter == 0 {
		c.BusyRetryAfter = d.BusyRetryAfter
	}
	if c.UserStaleness == 0 {
		c.UserStaleness = d.UserStaleness
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("service config: %w", err)
	}
	if c.Limits.MaxEventBytes > eventstore.MaxRecordSize {
		return fmt.Errorf("service config: Limits.MaxEventBytes %d exceeds the event store's record limit %d",
			c.Limits.MaxEventBytes, eventstore.MaxRecordSize)
	}
	if c.CacheSize < 0 || c.MaxAttempts < 0 || c.BusyRetryAfter < 0 || c.MaxCommitBatch < 0 {
		return fmt.Errorf("service config: CacheSize %d, MaxAttempts %d, BusyRetryAfter %v and MaxCommitBatch %d must not be negative",
			c.CacheSize, c.MaxAttempts, c.BusyRetryAfter, c.MaxCommitBatch)
	}
	return nil
}

// Service implements the sync protocol's operations over an event store and the read
// models. It is safe for concurrent use, also by several processes sharing one store:
// the expected-version check of the append is the only lock.
type Service struct {
	cfg   Config
	store eventstore.Store
	reads ReadModel
	ids   IDAllocator
	log   *slog.Logger
	group *groupAppender // nil: one transaction per append
	hot   *commitQueues  // commits waiting per workspace (commitqueue.go)

	workspaces *cache[*domain.Workspace]
	users      *cache[*domain.User]
	usage      *usageCache
}

// New builds a Service over an event store, the read models it answers queries from,
// and the allocator of new items' ids. It does no I/O: whatever store, reads and ids
// need (migrations, connections) is the caller's to prepare.
func New(cfg Config, store eventstore.Store, reads ReadModel, ids IDAllocator) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, store: store, reads: reads, ids: ids, log: cfg.Logger,
		workspaces: newCache(cfg.CacheSize, func(id uuid.UUID) *domain.Workspace { return domain.NewWorkspace(id) }),
		users:      newCache(cfg.CacheSize, func(id uuid.UUID) *domain.User { return domain.NewUser(id) }),
		usage:      newUsageCache(cfg.UserStaleness, cfg.CacheSize),
		hot:        newCommitQueues(),
	}
	if b, ok := store.(eventstore.BatchAppender); ok && cfg.GroupCommit {
		s.group = &groupAppender{store: b, maxFlushers: 4, maxBatch: 64, timeout: 30 * time.Second}
	}
	return s, nil
}

// AppendedCommit is one commit this process appended, for Config.OnCommitted.
type AppendedCommit struct {
	EventID uuid.UUID
	Event   domain.Committed
	// Position is the commit's place in the global order; commits appended together
	// (a hot workspace's batch) all carry the append's last position.
	Position eventstore.Position
	// Prev is the place of the stream's event before the commit (for the later commits
	// of a batch, the batch's position: never before the true one); MembersAt that of
	// the stream's latest membership change (creation, a member added or removed).
	Prev, MembersAt eventstore.Position
}

// aggregate is what both aggregates offer the generic command loop.
type aggregate interface {
	Evolve(domain.Event)
	StreamVersion() uint64
}

// entry is one cached aggregate: its state as of the stream's last read event, and the
// chain hash of that event. mu serialises commands on the aggregate within a process.
type entry[A aggregate] struct {
	mu       sync.Mutex
	id       uuid.UUID
	state    A
	lastHash string
	elem     *list.Element
	// readAt is when the state was last caught up with the stream (zero: never).
	readAt time.Time
	// lastPos is the global position of the stream's last event read or written;
	// membersAt that of its latest membership change (see AppendedCommit).
	lastPos, membersAt eventstore.Position
	// spare, when hasSpare, is a second copy of state, kept in step with it by apply. A
	// batch of commands decides on it (each decision must see the events of the ones
	// before it, which are not stored yet) while state stays as stored; a failed batch
	// drops it. Only workspaces that had a batch of several commands have one: it saves
	// such a batch a copy of the whole state, for twice the memory.
	spare    A
	hasSpare bool
	// view, when hasView, is a copy of state that readers who never modify it share
	// (loadUserView); apply and reset drop it.
	view    A
	hasView bool
}

// cache is a bounded LRU of aggregates.
type cache[A aggregate] struct {
	mu    sync.Mutex
	max   int
	byID  map[uuid.UUID]*entry[A]
	order *list.List // front = most recent
	fresh func(uuid.UUID) A
}

func newCache[A aggregate](max int, fresh func(uuid.UUID) A) *cache[A] {
	return &cache[A]{max: max, byID: map[uuid.UUID]*entry[A]{}, order: list.New(), fresh: fresh}
}

// get returns the entry of id, creating an empty one; the caller locks entry.mu.
func (c *cache[A]) get(id uuid.UUID) *entry[A] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.order.MoveToFront(e.elem)
		return e
	}
	e := &entry[A]{id: id, state: c.fresh(id)}
	e.elem = c.order.PushFront(e)
	c.byID[id] = e
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byID, old.Value.(*entry[A]).id)
	}
	return e
}

// reset forgets an entry's state (after an append of unknown outcome).
func (e *entry[A]) reset(fresh func(uuid.UUID) A) {
	e.state = fresh(e.id)
	e.lastHash = ""
	e.readAt = time.Time{}
	e.lastPos, e.membersAt = eventstore.Position{}, eventstore.Position{}
	e.dropSpare()
	e.dropView()
}

func (e *entry[A]) dropView() {
	var none A
	e.view, e.hasView = none, false
}

// apply folds a stored event (typ: its type, hash: its chain hash, pos: its place in
// the global order) into the state and the spare.
func (e *entry[A]) apply(ev domain.Event, typ, hash string, pos eventstore.Position) {
	e.state.Evolve(ev)
	if e.hasSpare {
		e.spare.Evolve(ev)
	}
	e.dropView()
	e.lastHash = hash
	e.lastPos = pos
	switch typ {
	case domain.TypeWorkspaceCreated, domain.TypeMemberAdded, domain.TypeMemberRemoved:
		e.membersAt = pos
	}
}

func (e *entry[A]) dropSpare() {
	var none A
	e.spare, e.hasSpare = none, false
}

// catchUp pages: at most catchUpPage events and catchUpBytes of event data per read
// (events are up to 4 MiB: a page of 1,000 of them held 4 GB).
const (
	catchUpPage  = 1000
	catchUpBytes = 16 << 20
)

// catchUp applies the stream's events after the entry's state.
func catchUp[A aggregate](ctx context.Context, store eventstore.Store, stream string, e *entry[A]) error {
	for {
		recs, err := eventstore.ReadStreamBounded(ctx, store, stream, e.state.StreamVersion()+1, catchUpPage, catchUpBytes)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		for _, r := range recs {
			if r.StreamVersion != e.state.StreamVersion()+1 {
				return fmt.Errorf("read %s: got version %d after %d", stream, r.StreamVersion, e.state.StreamVersion())
			}
			ev, err := domain.Decode(r.Type, r.Data)
			if err != nil {
				return fmt.Errorf("read %s@%d: %w", stream, r.StreamVersion, err)
			}
			e.apply(ev, r.Type, domain.ChainHash(r.Type, r.Data), r.Position)
		}
		if !eventstore.MayHaveMore(recs, catchUpPage, catchUpBytes) {
			e.readAt = time.Now()
			return nil
		}
	}
}

// outcome is what execute returns: the appended (or, for a repeated request, the
// original) event and its id.
type outcome struct {
	event    domain.Event
	eventID  uuid.UUID
	position eventstore.Position // the event's place in the global order
	replayed bool
}

// execute runs the command loop on one aggregate: catch up, decide, append with the
// expected version, and on a concurrent append catch up and decide again. decide
// builds the command from the current state (prev is the chain hash the event must
// carry). requestKey, if not empty, makes the event id deterministic so a retried
// append of the same request is recognised by the store.
func execute[A aggregate](ctx context.Context, s *Service, c *cache[A], id uuid.UUID, stream, requestKey string,
	decide func(state A, prev string) (domain.Decision, error)) (outcome, error) {
	e := c.get(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		// Optimistic: a state this process has read or written is decided on as it is;
		// if another process appended meanwhile, the append fails on the expected
		// version and the next attempt reads the stream's tail first.
		caughtUp := attempt > 0 || e.readAt.IsZero()
		if caughtUp {
			if err := catchUp(ctx, s.store, stream, e); err != nil {
				return outcome{}, err
			}
		}
		d, err := decide(e.state, e.lastHash)
		if err != nil {
			if !caughtUp {
				// A refusal decided on a cached state may be stale (a member added, a
				// device registered through another process): refuse only on the tail.
				continue
			}
			return outcome{}, err
		}
		if d.ReplayOf > 0 {
			return s.readOriginal(ctx, stream, d.ReplayOf)
		}
		ev, rec, err := decisionRecord(stream, requestKey, d)
		if err != nil {
			return outcome{}, err
		}
		res, err := s.append(ctx, stream, eventstore.Exact(e.state.StreamVersion()), rec)
		switch {
		case err == nil && !res.Duplicate:
			return appended(ctx, s, e, ev, rec, res.Position), nil
		case err == nil && res.Duplicate:
			return duplicate(ctx, s, stream, requestKey, e, ev, res.StreamVersion)
		case errors.Is(err, eventstore.ErrRecordTooLarge):
			return outcome{}, fmt.Errorf("%w: the request's record would exceed %d bytes: split it into smaller requests",
				protocol.ErrInvalid, eventstore.MaxRecordSize)
		case errors.Is(err, eventstore.ErrWrongVersion):
			continue
		case eventstore.Transient(err):
			// The append may or may not have been stored: forget the cached state and
			// re-read; the deterministic event id makes a retry safe.
			e.reset(c.fresh)
			s.log.Warn("append failed transiently; retrying", "stream", stream, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return outcome{}, ctx.Err()
			case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
			}
			continue
		default:
			e.reset(c.fresh)
			return outcome{}, fmt.Errorf("append %s@%d: %w", stream, e.state.StreamVersion(), err)
		}
	}
	return outcome{}, &protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter}
}

// decisionRecord returns the one event of a decision and its record; requestKey, if
// not empty, makes the record's id deterministic.
func decisionRecord(stream, requestKey string, d domain.Decision) (domain.Event, eventstore.Record, error) {
	if len(d.Events) != 1 {
		return nil, eventstore.Record{}, fmt.Errorf("decide on %s: %d events, want 1", stream, len(d.Events))
	}
	ev := d.Events[0]
	typ, data, err := domain.Encode(ev)
	if err != nil {
		return nil, eventstore.Record{}, err
	}
	id := uuid.New()
	if requestKey != "" {
		id = eventID(stream, requestKey)
	}
	return ev, eventstore.Record{ID: id, Type: typ, Data: data}, nil
}

// appended applies an event this process appended to its cached aggregate and tells
// the hooks: OnCommitted first, so that a follower OnAppend wakes (the notifier) finds
// a commit that direct publishing handles already registered with it.
func appended[A aggregate](ctx context.Context, s *Service, e *entry[A], ev domain.Event, rec eventstore.Record, pos eventstore.Position) outcome {
	prev := e.lastPos
	e.apply(ev, rec.Type, domain.ChainHash(rec.Type, rec.Data), pos)
	e.readAt = time.Now()
	if c, ok := ev.(domain.Committed); ok && s.cfg.OnCommitted != nil {
		s.cfg.OnCommitted(ctx, AppendedCommit{EventID: rec.ID, Event: c, Position: pos, Prev: prev, MembersAt: e.membersAt})
	}
	if s.cfg.OnAppend != nil {
		s.cfg.OnAppend()
	}
	return outcome{event: ev, eventID: rec.ID, position: pos}
}

// duplicate answers an append the store recognised as a repeat: an earlier attempt of
// this request was stored (its outcome was lost), and the stored event is the answer,
// whatever this attempt decided.
func duplicate[A aggregate](ctx context.Context, s *Service, stream, requestKey string, e *entry[A], ev domain.Event, version uint64) (outcome, error) {
	if err := catchUp(ctx, s.store, stream, e); err != nil {
		return outcome{}, err
	}
	orig, err := s.readOriginal(ctx, stream, version)
	if err == nil && orig.event.EventType() != ev.EventType() {
		return outcome{}, fmt.Errorf("%w: requestId %q was used by a %s", protocol.ErrInvalid, requestKey, orig.event.EventType())
	}
	return orig, err
}

// append writes records to one stream in one append, through group commit when it is on.
func (s *Service) append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, recs ...eventstore.Record) (eventstore.AppendResult, error) {
	if s.group != nil {
		return s.group.append(ctx, stream, expected, recs)
	}
	return s.store.Append(ctx, stream, expected, recs...)
}

// eventIDSpace namespaces deterministic event ids (UUIDv5 of stream and request id).
var eventIDSpace = uuid.MustParse("6f1d8a52-3c0e-4b7e-9a55-0c1f4e2b9d71")

// eventID is the deterministic id of the event that records the request key on stream:
// a retried append of the same request is recognised by the store.
func eventID(stream, requestKey string) uuid.UUID {
	return uuid.NewSHA1(eventIDSpace, []byte(stream+"\x00"+requestKey))
}

func (s *Service) readOriginal(ctx context.Context, stream string, version uint64) (outcome, error) {
	recs, err := s.store.ReadStream(ctx, stream, version, 1)
	if err != nil {
		return outcome{}, fmt.Errorf("read original %s@%d: %w", stream, version, err)
	}
	if len(recs) != 1 || recs[0].StreamVersion != version {
		return outcome{}, fmt.Errorf("read original %s@%d: not found", stream, version)
	}
	ev, err := domain.Decode(recs[0].Type, recs[0].Data)
	if err != nil {
		return outcome{}, fmt.Errorf("read original %s@%d: %w", stream, version, err)
	}
	return outcome{event: ev, eventID: recs[0].ID, position: recs[0].Position, replayed: true}, nil
}

// loadUser returns a snapshot of a user's state, caught up with its stream unless this
// process read it within Config.UserStaleness (and fresh is false).
func (s *Service) loadUser(ctx context.Context, id uuid.UUID, fresh bool) (*domain.User, error) {
	e := s.users.get(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if fresh || e.readAt.IsZero() || time.Since(e.readAt) > s.cfg.UserStaleness {
		if err := catchUp(ctx, s.store, domain.UserStream(id), e); err != nil {
			return nil, err
		}
	}
	return e.state.Clone(), nil
}

// loadUserView is loadUser for callers that only read the user (Commit: its device,
// existence and quota): the snapshot it returns is shared with the other such callers
// until the user's state changes, and must not be modified. It spares each commit a
// copy of its user (the devices and registrations maps), about 4% of syncd's CPU per
// commit in a profile of `syncctl bench --scenario spread`.
func (s *Service) loadUserView(ctx context.Context, id uuid.UUID, fresh bool) (*domain.User, error) {
	e := s.users.get(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if fresh || e.readAt.IsZero() || time.Since(e.readAt) > s.cfg.UserStaleness {
		if err := catchUp(ctx, s.store, domain.UserStream(id), e); err != nil {
			return nil, err
		}
	}
	if !e.hasView {
		e.view, e.hasView = e.state.Clone(), true
	}
	return e.view, nil
}

// loadWorkspace returns a snapshot of a workspace's state, caught up with its stream.
func (s *Service) loadWorkspace(ctx context.Context, id uuid.UUID) (*domain.Workspace, error) {
	e := s.workspaces.get(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := catchUp(ctx, s.store, domain.WorkspaceStream(id), e); err != nil {
		return nil, err
	}
	return e.state.Clone(), nil
}
