package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/stages"
)

// maxBatchBytes bounds the event data of one batch, and so of one append: as much as
// one record may hold. A single event may take it all.
const maxBatchBytes = eventstore.MaxRecordSize

// batchTimeout bounds the store I/O of one batch. A batch works for all its callers, so
// none of their contexts may end it.
const batchTimeout = 30 * time.Second

// batchPlan is what one attempt decided for a batch of commits: the commands answered at
// once (refused, or repeats of stored events), the events to append with their owners,
// the repeats of a command earlier in the batch, and the commands that did not fit.
type batchPlan struct {
	now      []nowAnswer
	refusals int
	records  []eventstore.Record
	events   []domain.Event
	hashes   []string
	owners   []*queuedCommit // owners[i] asked for events[i]
	repeats  []repeat
	deferred []*queuedCommit
	onSpare  bool // decided on the entry's spare, which now holds the events
}

// nowAnswer answers a command before the append: an error, or the stored event at
// version replayOf.
type nowAnswer struct {
	c        *queuedCommit
	err      error
	replayOf uint64
}

// repeat is a command whose requestId an earlier command of the batch used: it gets
// that command's event, as a replay.
type repeat struct {
	c  *queuedCommit
	of int // index into events
}

// commitBatch decides the commits of batch one after another against the workspace's
// state, each seeing the events of those before it, and appends their events in one
// append; then it answers each caller with its own outcome. On a concurrent append it
// catches up and decides the whole batch again. It returns the commands it left for the
// next batch (the batch reached maxBatchBytes).
func (s *Service) commitBatch(ws uuid.UUID, batch []*queuedCommit) (deferred []*queuedCommit) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	stream := domain.WorkspaceStream(ws)
	e := s.workspaces.get(ws)
	e.mu.Lock()
	defer e.mu.Unlock()
	markAll(batch, stages.Taken)
	live := batch // the commands not answered yet
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		if live = dropAbandoned(live); len(live) == 0 {
			return nil
		}
		// As in execute: decide on the cached state; catch up first on a retry or when
		// this process has not read the stream yet.
		caughtUp := attempt > 0 || e.readAt.IsZero()
		if caughtUp {
			if err := catchUp(ctx, s.store, stream, e); err != nil {
				answerAll(live, err)
				return nil
			}
		}
		p := s.decideBatch(ctx, e, stream, live)
		if p.refusals > 0 && !caughtUp {
			// A refusal decided on a cached state may be stale (a member added through
			// another process): refuse only on the tail.
			p.discard(e)
			continue
		}
		live = s.answerNow(ctx, stream, p)
		if len(p.records) == 0 {
			return p.deferred
		}
		base := e.state.StreamVersion()
		owner := e.state.OwnerID()
		s.usage.committing(owner, e.id)
		markAll(p.owners, stages.Decided)
		res, err := s.append(traced(ctx, p.owners), stream, eventstore.Exact(base), p.records...)
		s.usage.committing(owner, e.id) // a read that began during the append may miss it
		if err == nil && !res.Duplicate {
			prev := e.lastPos
			p.recordIn(e, res.Position)
			// OnCommitted first: a follower woken by OnAppend (the notifier) then finds
			// the direct publisher's publish registered and does not publish it again.
			s.committed(ctx, p, prev, res.Position, e.membersAt)
			if s.cfg.OnAppend != nil {
				s.cfg.OnAppend()
			}
			p.answerAppended(res.Position)
			return p.deferred
		}
		p.discard(e)
		if !s.retryBatch(ctx, e, stream, base, attempt, err) {
			answerAll(live, fmt.Errorf("append %d events to %s@%d: %w", len(p.records), stream, base, err))
			return nil
		}
	}
	answerAll(live, &protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter})
	return nil
}

// retryBatch tells whether a batch whose append failed with err (nil: the records were
// stored before, Duplicate) is to be decided again, and prepares the entry for it.
func (s *Service) retryBatch(ctx context.Context, e *entry[*domain.Workspace], stream string, base uint64, attempt int, err error) bool {
	switch {
	case err == nil, errors.Is(err, eventstore.ErrWrongVersion):
		// Another process appended, or an earlier attempt's records were stored after
		// all: the next attempt catches up, where they are replays.
		return true
	case errors.Is(err, eventstore.ErrInvalidAppend):
		// Some record ids are stored, not as this same append: an earlier attempt
		// whose outcome was lost. They are on the tail unless the append was invalid.
		if cerr := catchUp(ctx, s.store, stream, e); cerr != nil {
			return false
		}
		return e.state.StreamVersion() != base
	case eventstore.Transient(err):
		// The append may or may not have been stored: forget the cached state and
		// re-read; the deterministic event ids make a retry safe.
		e.reset(s.workspaces.fresh)
		s.log.Warn("batch append failed transiently; retrying", "stream", stream, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
			return true
		}
	}
	e.reset(s.workspaces.fresh)
	return false
}

// decideBatch decides live in order. A single command is decided on the entry's state;
// several on its spare, which each decided event evolves for the next decision.
func (s *Service) decideBatch(ctx context.Context, e *entry[*domain.Workspace], stream string, live []*queuedCommit) *batchPlan {
	p := &batchPlan{}
	view := e.state
	if len(live) > 1 {
		if !e.hasSpare {
			e.spare, e.hasSpare = e.state.Clone(), true
		}
		view, p.onSpare = e.spare, true
	}
	base, prev, size := e.state.StreamVersion(), e.lastHash, 0
	quota := &batchQuota{}
	for i, c := range live {
		d, err := s.decideCommit(ctx, view, prev, c, quota)
		switch {
		case err != nil:
			p.now = append(p.now, nowAnswer{c: c, err: err})
			p.refusals++
			continue
		case d.ReplayOf > base:
			p.repeats = append(p.repeats, repeat{c: c, of: int(d.ReplayOf - base - 1)})
			continue
		case d.ReplayOf > 0:
			p.now = append(p.now, nowAnswer{c: c, replayOf: d.ReplayOf})
			continue
		case len(d.Events) != 1:
			p.now = append(p.now, nowAnswer{c: c, err: fmt.Errorf("decide on %s: %d events, want 1", stream, len(d.Events))})
			continue
		}
		ev := d.Events[0]
		typ, data, err := domain.Encode(ev)
		if err == nil && len(data) > eventstore.MaxRecordSize {
			err = fmt.Errorf("%w: the request's record would exceed %d bytes: split it into smaller requests",
				protocol.ErrInvalid, eventstore.MaxRecordSize)
		}
		if err != nil {
			p.now = append(p.now, nowAnswer{c: c, err: err})
			continue
		}
		if len(p.records) > 0 && size+len(data) > maxBatchBytes {
			p.deferred = live[i:]
			break
		}
		size += len(data)
		prev = domain.ChainHash(typ, data)
		// Value: the inline hook applies ev itself instead of decoding data again;
		// Encode's round trip (domain's FuzzCommittedRoundTrip) makes them the same.
		p.records = append(p.records, eventstore.Record{ID: eventID(stream, commitKey(c.req.RequestID)), Type: typ, Data: data, Value: ev})
		p.events, p.hashes, p.owners = append(p.events, ev), append(p.hashes, prev), append(p.owners, c)
		if p.onSpare {
			view.Evolve(ev)
		}
	}
	return p
}

// batchQuota is the workspace owner's quota as one attempt of a batch read it.
type batchQuota struct {
	owner               uuid.UUID
	haveUsage, haveUser bool
	elsewhere, limit    int64
}

// decideCommit decides one queued commit on w (prev: the chain hash of w's last event).
func (s *Service) decideCommit(ctx context.Context, w *domain.Workspace, prev string, c *queuedCommit, q *batchQuota) (domain.Decision, error) {
	req := &c.req
	if !w.Exists() {
		return domain.Decision{}, fmt.Errorf("%w: %s", protocol.ErrWorkspaceNotFound, req.WorkspaceID)
	}
	if !w.IsMember(req.UserID) {
		return domain.Decision{}, fmt.Errorf("%w: user %s is not a member of workspace %s", protocol.ErrUnauthorized, req.UserID, req.WorkspaceID)
	}
	limit, elsewhere, err := s.quotaOf(ctx, w, c.user, q)
	if err != nil {
		return domain.Decision{}, err
	}
	d, err := w.Decide(domain.Commit{
		RequestID: req.RequestID, WorkspaceID: req.WorkspaceID, UserID: req.UserID, DeviceID: req.DeviceID,
		Items: req.Items, At: s.cfg.Now().UTC(), NewItemIDs: c.ids,
		QuotaLimit: limit, OwnerUsedElsewhere: elsewhere, Limits: s.cfg.Limits, PrevHash: prev,
	})
	return d, mapDomainErr(err)
}

// quotaOf returns the owner's limit and the bytes they use in their other workspaces
// (the notification's usedQuota counts them whether a limit is set or not), read once
// per attempt of a batch. caller is the committing user's state, used when the caller
// owns the workspace.
func (s *Service) quotaOf(ctx context.Context, w *domain.Workspace, caller *domain.User, q *batchQuota) (limit, elsewhere int64, err error) {
	owner := w.OwnerID()
	if !q.haveUsage || q.owner != owner {
		usage, err := s.usage.elsewhere(ctx, s, owner, w.ID())
		if err != nil {
			return 0, 0, fmt.Errorf("quota of %s: %w", owner, err)
		}
		*q = batchQuota{owner: owner, haveUsage: true, elsewhere: usage}
	}
	if owner == caller.ID() {
		return caller.QuotaLimit(), q.elsewhere, nil
	}
	if !q.haveUser {
		u, err := s.loadUser(ctx, owner, false)
		if err != nil {
			return 0, 0, fmt.Errorf("quota of %s: %w", owner, err)
		}
		q.limit, q.haveUser = u.QuotaLimit(), true
	}
	return q.limit, q.elsewhere, nil
}

// answerNow answers the commands p settled before the append (refusals, repeats of
// stored events) and returns the rest: those with an event, repeats of those, and the
// deferred.
func (s *Service) answerNow(ctx context.Context, stream string, p *batchPlan) []*queuedCommit {
	for _, a := range p.now {
		if a.err != nil {
			a.c.answer(outcome{}, a.err)
			continue
		}
		a.c.answer(s.readOriginal(ctx, stream, a.replayOf))
	}
	live := append([]*queuedCommit(nil), p.owners...)
	for _, r := range p.repeats {
		live = append(live, r.c)
	}
	return append(live, p.deferred...)
}

// recordIn folds p's appended events, stored at pos (one transaction), into the
// entry's state (its spare holds them already when they were decided on it).
func (p *batchPlan) recordIn(e *entry[*domain.Workspace], pos eventstore.Position) {
	for i, ev := range p.events {
		if p.onSpare {
			e.state.Evolve(ev)
			e.lastHash, e.lastPos = p.hashes[i], pos
		} else {
			e.apply(ev, p.records[i].Type, p.hashes[i], pos)
		}
	}
	e.readAt = time.Now()
}

// committed tells Config.OnCommitted of p's appended commits, in order: the first
// follows the event at prev, each later one the one before it (all stored at pos).
func (s *Service) committed(ctx context.Context, p *batchPlan, prev, pos, membersAt eventstore.Position) {
	if s.cfg.OnCommitted == nil {
		return
	}
	for i, ev := range p.events {
		if c, ok := ev.(domain.Committed); ok {
			s.cfg.OnCommitted(ctx, AppendedCommit{EventID: p.records[i].ID, Event: c, Position: pos, Prev: prev, MembersAt: membersAt})
			stages.Mark(p.owners[i].ctx, stages.Published)
		}
		prev = pos
	}
}

// discard forgets p's decisions: the spare they evolved no longer matches the state.
func (p *batchPlan) discard(e *entry[*domain.Workspace]) {
	if p.onSpare && len(p.events) > 0 {
		e.dropSpare()
	}
}

// answerAppended answers the commands whose events were appended at pos (the position of
// the batch's last event: they share one transaction), and their repeats.
func (p *batchPlan) answerAppended(pos eventstore.Position) {
	for i, c := range p.owners {
		c.answer(outcome{event: p.events[i], eventID: p.records[i].ID, position: pos}, nil)
	}
	for _, r := range p.repeats {
		r.c.answer(outcome{event: p.events[r.of], eventID: p.records[r.of].ID, position: pos, replayed: true}, nil)
	}
}

// dropAbandoned answers the commands whose callers gave up and returns the others.
func dropAbandoned(cs []*queuedCommit) []*queuedCommit {
	kept := cs[:0:0]
	for _, c := range cs {
		if err := c.ctx.Err(); err != nil {
			c.answer(outcome{}, err)
			continue
		}
		kept = append(kept, c)
	}
	return kept
}

func answerAll(cs []*queuedCommit, err error) {
	for _, c := range cs {
		c.answer(outcome{}, err)
	}
}

// markAll marks stage s on the traces of cs (internal/stages; a no-op untraced).
func markAll(cs []*queuedCommit, s stages.Stage) {
	for _, c := range cs {
		stages.Mark(c.ctx, s)
	}
}

// traced returns ctx carrying the traces of cs, so that the store's append marks its
// phases on all of them.
func traced(ctx context.Context, cs []*queuedCommit) context.Context {
	var ts []*stages.Trace
	for _, c := range cs {
		ts = append(ts, stages.From(c.ctx)...)
	}
	return timed(ctx, ts)
}

// phaseStages maps the store's append phases to the commit's stages.
var phaseStages = map[eventstore.AppendPhase]stages.Stage{
	eventstore.PhaseWriting: stages.Writing, eventstore.PhaseSent: stages.Sent, eventstore.PhaseCommitted: stages.Committed,
}

// timed returns ctx carrying traces, with the phases of an append made with it
// (eventstore.WithPhases) marked on each of them; without traces, ctx.
func timed(ctx context.Context, traces []*stages.Trace) context.Context {
	if len(traces) == 0 {
		return ctx
	}
	return eventstore.WithPhases(stages.With(ctx, traces...), func(p eventstore.AppendPhase) {
		if st, ok := phaseStages[p]; ok {
			for _, t := range traces {
				t.Mark(st)
			}
		}
	})
}
