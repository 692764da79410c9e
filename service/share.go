package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
)

// MaxShareEmails bounds the e-mails of one share request.
const MaxShareEmails = 1000

// ErrSharingUnsupported refuses a share on a store that cannot append to two streams
// atomically (eventstore.CapMultiStreamAppend): the move would risk a half-done state.
// It wraps eventstore.ErrUnsupported with the store's reason.
var ErrSharingUnsupported = errors.New("sharing needs an event store with atomic multi-stream appends")

// ShareRequest is createShareProposal (PROTOCOL.md §8) as the service takes it: share
// folder ItemID of the caller's personal workspace with the users of Emails.
type ShareRequest struct {
	RequestID   string
	UserID      uuid.UUID
	ItemID      domain.ItemID
	Emails      []string
	IsEncrypted bool
}

// ShareResult is a share's outcome. MovedOut is the source workspace's event (nil when
// the folder was shared already and only members were added), and MovedIn S's: each the
// whole move, joined when it was stored in parts (share_parts.go); Target holds the events
// appended to the shared workspace (WorkspaceCreated, ItemsMovedIn and MemberAdded, or
// only MemberAdded). Replayed: the requestId had been processed; MovedOut is the
// original event and nothing was appended.
type ShareResult struct {
	WorkspaceID uuid.UUID // the shared workspace
	SourceID    uuid.UUID // the caller's personal workspace
	MovedOut    *domain.ItemsMovedOut
	MovedOutID  uuid.UUID // the stored id of MovedOut's event
	// MovedIn is S's event of the same share (nil when only members were added), with
	// its stored id and place in the global order (at or after it on a fresh share: the
	// append's last); set on a replay too.
	MovedIn    *domain.ItemsMovedIn
	MovedInID  uuid.UUID
	MovedInPos eventstore.Position
	Target     []domain.Event
	NewMembers []uuid.UUID
	Position   eventstore.Position // of the last appended event
	Replayed   bool
	// Proposals, on a replay, are the notifyShareProposals the share gave (the owner's,
	// then one per member it added), as the notifier published them; ProposalsPos is
	// the position of the last event of the share's append to S (past it, the binder
	// bound every member's queues and the notifier published them).
	Proposals    []ShareProposal
	ProposalsPos eventstore.Position
}

// Share decides a share and appends its events to both workspaces' streams in one
// atomic multi-stream append, retrying on a concurrent append. Unknown e-mails and the
// caller's own are skipped (none left: ErrUserNotFound). It refuses with
// ErrSharingUnsupported on a store without the capability, before anything else.
func (s *Service) Share(ctx context.Context, req ShareRequest) (ShareResult, error) {
	if err := eventstore.Supports(s.store, eventstore.CapMultiStreamAppend); err != nil {
		return ShareResult{}, fmt.Errorf("share %q: %w: %w", req.RequestID, ErrSharingUnsupported, err)
	}
	multi := s.store.(eventstore.MultiAppender)
	cmd, err := s.shareCommand(ctx, req)
	if err != nil {
		return ShareResult{}, fmt.Errorf("share %q: %w", req.RequestID, err)
	}
	src := s.workspaces.get(cmd.SourceID)
	src.mu.Lock()
	defer src.mu.Unlock()
	for attempt := 0; attempt < s.cfg.MaxAttempts; attempt++ {
		res, retry, err := s.shareAttempt(ctx, multi, src, cmd)
		if !retry {
			return res, err
		}
		if eventstore.Transient(err) {
			s.log.Warn("share append failed transiently; retrying", "request", req.RequestID, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return ShareResult{}, ctx.Err()
			case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
			}
		}
	}
	return ShareResult{}, &protocol.BusyError{RetryAfter: s.cfg.BusyRetryAfter}
}

// shareCommand checks the caller, resolves the e-mails and finds the caller's personal
// workspace and quota figures.
func (s *Service) shareCommand(ctx context.Context, req ShareRequest) (domain.ShareFolder, error) {
	if len(req.Emails) > MaxShareEmails {
		return domain.ShareFolder{}, fmt.Errorf("%w: %d e-mails, the limit is %d per share", protocol.ErrInvalid, len(req.Emails), MaxShareEmails)
	}
	u, err := s.loadUser(ctx, req.UserID, true)
	if err != nil {
		return domain.ShareFolder{}, err
	}
	if !u.Exists() || u.Removed() {
		return domain.ShareFolder{}, fmt.Errorf("%w: user %s", protocol.ErrUnauthorized, req.UserID)
	}
	var members []uuid.UUID
	for _, email := range req.Emails {
		email = strings.ToLower(strings.TrimSpace(email))
		if err := domain.CheckText("email", email, domain.MaxEmailBytes); err != nil {
			return domain.ShareFolder{}, fmt.Errorf("%w: %w", protocol.ErrInvalid, err)
		}
		found, err := read(ctx, s.reads, func(ctx context.Context) (*uuid.UUID, error) {
			acct, ok, err := s.reads.AccountByEmail(ctx, email)
			if !ok || err != nil {
				return nil, err
			}
			return &acct.UserID, nil
		})
		if err != nil {
			return domain.ShareFolder{}, fmt.Errorf("look up %s: %w", email, err)
		}
		if found != nil {
			members = append(members, *found)
		}
	}
	personal, mounts, err := s.personalWorkspace(ctx, req.UserID)
	if err != nil {
		return domain.ShareFolder{}, err
	}
	used, err := read(ctx, s.reads, func(ctx context.Context) (int64, error) {
		return s.reads.OwnerUsageExcept(ctx, req.UserID, uuid.Nil)
	})
	if err != nil {
		return domain.ShareFolder{}, fmt.Errorf("usage of %s: %w", req.UserID, err)
	}
	return domain.ShareFolder{RequestID: req.RequestID, UserID: req.UserID, SourceID: personal, FolderID: req.ItemID,
		Members: members, MountPoints: mounts, IsEncrypted: req.IsEncrypted, At: s.cfg.Now().UTC(), QuotaLimit: u.QuotaLimit(), UsedQuota: used,
		Limits: s.cfg.Limits}, nil
}

// personalWorkspace returns the workspace user owns that is not shared, and the
// user's mount points of the others (where the user mounts them, in any workspace).
func (s *Service) personalWorkspace(ctx context.Context, user uuid.UUID) (uuid.UUID, []domain.ItemID, error) {
	ws, err := s.Workspaces(ctx, user)
	if err != nil {
		return uuid.Nil, nil, err
	}
	personal := uuid.Nil
	var mounts []domain.ItemID
	for _, w := range ws {
		if w.OwnerID == user && !w.IsShared && personal == uuid.Nil {
			personal = w.ID
		} else if w.ParentItemID != nil {
			mounts = append(mounts, *w.ParentItemID)
		}
	}
	if personal == uuid.Nil {
		return uuid.Nil, nil, fmt.Errorf("%w: user %s has no personal workspace", protocol.ErrNoWorkspaces, user)
	}
	return personal, mounts, nil
}

// shareAttempt runs one catch-up, decide and append round with the source workspace's
// entry locked (and the target's, which it locks). retry reports that the caller should
// try again: after a concurrent append, or after a transient failure (then err is set).
func (s *Service) shareAttempt(ctx context.Context, multi eventstore.MultiAppender, src *entry[*domain.Workspace],
	cmd domain.ShareFolder) (res ShareResult, retry bool, err error) {
	srcStream := domain.WorkspaceStream(cmd.SourceID)
	if err := catchUp(ctx, s.store, srcStream, src); err != nil {
		return ShareResult{}, false, err
	}
	target := src.state.ShareTarget(cmd)
	if target == cmd.SourceID {
		return ShareResult{}, false, fmt.Errorf("%w: workspace %s cannot be shared into itself", protocol.ErrInvalid, target)
	}
	dst := s.workspaces.get(target)
	dst.mu.Lock()
	defer dst.mu.Unlock()
	dstStream := domain.WorkspaceStream(target)
	if err := catchUp(ctx, s.store, dstStream, dst); err != nil {
		return ShareResult{}, false, err
	}
	cmd.SourcePrevHash, cmd.TargetPrevHash = src.lastHash, dst.lastHash
	d, err := domain.DecideShare(src.state, dst.state, cmd)
	if err != nil {
		if _, ok := src.state.Item(cmd.FolderID); !ok && src.state.Exists() && errors.Is(err, domain.ErrInvalidCommand) {
			return ShareResult{}, false, s.foreignItem(ctx, cmd.UserID, cmd.SourceID, cmd.FolderID)
		}
		return ShareResult{}, false, mapShareErr(err)
	}
	if d.ReplayOf > 0 {
		res, err := s.shareReplay(ctx, srcStream, cmd, d)
		return res, false, err
	}
	if len(d.ReplayMembers) > 0 {
		res, err := s.reshareReplay(ctx, cmd, d, dst)
		return res, false, err
	}
	res = ShareResult{WorkspaceID: d.TargetID, SourceID: cmd.SourceID, Target: d.Target, NewMembers: d.NewMembers}
	if len(d.Source)+len(d.Target) == 0 {
		return res, false, nil
	}
	srcApp, dstApp, appends, err := shareAppends(srcStream, src.state.StreamVersion(), dstStream, dst.state.StreamVersion(), cmd.RequestID, d)
	if err != nil {
		return ShareResult{}, false, err
	}
	out, in, err := joinedMoves(d)
	if err != nil {
		return ShareResult{}, false, fmt.Errorf("share %s → %s: %w", cmd.SourceID, target, err)
	}
	results, err := multi.AppendMulti(ctx, appends)
	switch {
	case err == nil && results[0].Duplicate:
		// An earlier attempt was stored, its outcome lost: the next attempt reads it.
		src.reset(s.workspaces.fresh)
		dst.reset(s.workspaces.fresh)
		return ShareResult{}, true, nil
	case err == nil:
		applyShare(src, srcApp, d.Source, results[0].Position)
		applyShare(dst, dstApp, d.Target, results[len(results)-1].Position)
		res.Position = results[len(results)-1].Position
		// A move's first part holds its place in each stream (S: after WorkspaceCreated).
		if out != nil {
			res.MovedOut, res.MovedOutID = out, srcApp.Records[0].ID
			res.MovedIn, res.MovedInID, res.MovedInPos = in, dstApp.Records[1].ID, res.Position
		}
		if s.cfg.OnAppend != nil {
			s.cfg.OnAppend()
		}
		return res, false, nil
	case errors.Is(err, eventstore.ErrRecordTooLarge):
		return ShareResult{}, false, fmt.Errorf("%w: a share event would exceed %d bytes", protocol.ErrInvalid, eventstore.MaxRecordSize)
	case errors.Is(err, eventstore.ErrWrongVersion):
		return ShareResult{}, true, nil
	default:
		src.reset(s.workspaces.fresh)
		dst.reset(s.workspaces.fresh)
		return ShareResult{}, eventstore.Transient(err), fmt.Errorf("append share %s → %s: %w", cmd.SourceID, target, err)
	}
}

// shareAppends are the appends of d's events to the source and target streams (at
// versions sv and tv), and the non-empty ones of the two, in that order.
func shareAppends(src string, sv uint64, dst string, tv uint64, requestID string, d domain.ShareDecision) (
	srcApp, dstApp eventstore.StreamAppend, appends []eventstore.StreamAppend, err error) {
	if srcApp, err = shareAppend(src, sv, "share:"+requestID, d.Source); err != nil {
		return
	}
	if dstApp, err = shareAppend(dst, tv, "share:"+requestID, d.Target); err != nil {
		return
	}
	for _, a := range []eventstore.StreamAppend{srcApp, dstApp} {
		if len(a.Records) > 0 {
			appends = append(appends, a)
		}
	}
	return srcApp, dstApp, appends, nil
}

// shareAppend is the append of evs to stream at version v, with event ids derived from
// the request key, so that a retried append is recognised by the store.
func shareAppend(stream string, v uint64, key string, evs []domain.Event) (eventstore.StreamAppend, error) {
	a := eventstore.StreamAppend{Stream: stream, Expected: eventstore.Exact(v)}
	for i, e := range evs {
		typ, data, err := domain.Encode(e)
		if err != nil {
			return eventstore.StreamAppend{}, err
		}
		a.Records = append(a.Records, eventstore.Record{ID: eventID(stream, fmt.Sprintf("%s\x00%d", key, i)), Type: typ, Data: data})
	}
	return a, nil
}

// applyShare folds the appended events into the entry, at pos (the append's last).
func applyShare(e *entry[*domain.Workspace], a eventstore.StreamAppend, evs []domain.Event, pos eventstore.Position) {
	for i, ev := range evs {
		r := a.Records[i]
		e.apply(ev, r.Type, domain.ChainHash(r.Type, r.Data), pos)
	}
	e.readAt = time.Now()
}

// mapShareErr turns a share decision's error into the service error the wire knows.
func mapShareErr(err error) error {
	switch {
	case errors.Is(err, domain.ErrNoMembers):
		return fmt.Errorf("%w: %w", protocol.ErrUserNotFound, err)
	case errors.Is(err, domain.ErrNotFound), errors.Is(err, domain.ErrAlreadyExists):
		return fmt.Errorf("%w: %w", protocol.ErrInvalid, err)
	}
	return mapDomainErr(err)
}
