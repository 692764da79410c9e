package notify

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// The notifications of sharing and membership (PROTOCOL.md §8). They go through the
// notifier only, never through Direct: they are rare, and the notifier's horizon (the
// binder's checkpoint) is what guarantees that the queues are bound first.
//
//   - ItemsMovedOut (in W): notifyCommit with movedOut on multi#<W>;
//   - ItemsMovedIn (in S): notifyCommit with movedIn on multi#<S>, then the owner's
//     notifyShareProposal on multi#<owner>. It is held until the binder's checkpoint
//     has passed the whole share (every MemberAdded appended with it), so the queues of
//     the owner and of every member are bound to multi#<S> before anything goes there;
//   - MemberAdded to a workspace a share created: notifyShareProposal on
//     multi#<member> (the binder bound the member's queues at that very event);
//   - MemberWorkspaceUpdated (updateWorkspace): notifyUpdateWorkspace on multi#<user>;
//   - MemberRemoved: notifyUnshare on multi#<user>, after the binder unbound the
//     user's queues from multi#<S> (same horizon).

// outMsg is one message an event gives: its exchange (multi#<to>), and for a
// notifyCommit the workspaceVersion it carries (commit true).
type outMsg struct {
	to     uuid.UUID
	msg    amqp.Publishing
	v      int64
	commit bool
}

// msgKey names the k-th message of an event.
type msgKey struct {
	id uuid.UUID
	k  int
}

// shareMessages renders the messages of the events of this file; ok false: rec is none
// of them, or gives no message. An error is the store's (retried); an event that does
// not decode is reported through bad (set aside).
func (p *publisher) shareMessages(ctx context.Context, rec eventstore.RecordedEvent) (out []outMsg, bad, err error) {
	switch rec.Type {
	case domain.TypeItemsMovedOut, domain.TypeItemsMovedIn, domain.TypeMemberAdded,
		domain.TypeMemberWorkspaceUpdated, domain.TypeMemberRemoved:
	default:
		return nil, nil, nil
	}
	ev, derr := domain.Decode(rec.Type, rec.Data)
	if derr != nil {
		return nil, derr, nil
	}
	switch e := ev.(type) {
	case domain.ItemsMovedOut:
		if e.Part > 0 { // published with the first part
			return nil, nil, nil
		}
		e, bad, err := p.joinedMovedOut(ctx, rec, e)
		if bad != nil || err != nil {
			return nil, bad, err
		}
		body, err := wire.EncodeNotifyMovedOut(rec.ID.String(), e)
		if err != nil {
			return nil, err, nil
		}
		return []outMsg{{to: e.WorkspaceID, msg: publishing(e.WorkspaceID, rec.ID, body), v: e.WorkspaceVersion, commit: true}}, nil, nil
	case domain.ItemsMovedIn:
		if e.Part > 0 { // published with the first part
			return nil, nil, nil
		}
		e, bad, err := p.joinedMovedIn(ctx, rec, e)
		if bad != nil || err != nil {
			return nil, bad, err
		}
		body, err := wire.EncodeNotifyMovedIn(rec.ID.String(), e)
		if err != nil {
			return nil, err, nil
		}
		out = []outMsg{{to: e.WorkspaceID, msg: publishing(e.WorkspaceID, rec.ID, body), v: e.WorkspaceVersion, commit: true}}
		info, err := p.shareInfo(ctx, e.WorkspaceID)
		if err != nil {
			return nil, nil, err
		}
		if m, ok, err := proposal(rec, 1, e.WorkspaceID, info, info.Owner, info.Name); err != nil {
			return nil, err, nil
		} else if ok {
			out = append(out, m)
		}
		return out, nil, nil
	case domain.MemberAdded:
		info, err := p.shareInfo(ctx, e.WorkspaceID)
		if err != nil {
			return nil, nil, err
		}
		m, ok, err := proposal(rec, 0, e.WorkspaceID, info, e.UserID, e.Name)
		if err != nil || !ok {
			return nil, err, nil
		}
		return []outMsg{m}, nil, nil
	case domain.MemberWorkspaceUpdated:
		body, err := wire.EncodeNotifyUpdateWorkspace(rec.ID.String(), protocol.UpdateWorkspaceRequest{
			RequestID: e.RequestID, UserID: e.UserID, WorkspaceID: e.WorkspaceID, Name: e.Name, ParentItemID: e.ParentItemID})
		if err != nil {
			return nil, err, nil
		}
		return []outMsg{{to: e.UserID, msg: publishing(e.UserID, rec.ID, body)}}, nil, nil
	case domain.MemberRemoved:
		body, err := wire.EncodeNotifyUnshare(rec.ID.String(), e.WorkspaceID)
		if err != nil {
			return nil, err, nil
		}
		return []outMsg{{to: e.UserID, msg: publishing(e.UserID, rec.ID, body)}}, nil, nil
	}
	return nil, fmt.Errorf("event %s decoded as %T", rec.ID, ev), nil
}

// proposal renders the notifyShareProposal of workspace ws for user, as the k-th
// message of rec; ok false when ws was not created by a share.
func proposal(rec eventstore.RecordedEvent, k int, ws uuid.UUID, info shareinfo.Info, user uuid.UUID, folderName string) (outMsg, bool, error) {
	if !info.Shared {
		return outMsg{}, false, nil
	}
	id := wire.ProposalEventID(rec.ID, k)
	body, err := wire.EncodeNotifyShareProposal(id.String(), ws, folderName, info.Folder, info.Owner, info.OwnerName, info.IsEncrypted)
	if err != nil {
		return outMsg{}, false, err
	}
	return outMsg{to: user, msg: publishing(user, id, body)}, true, nil
}

// publishing is the message of an event to multi#<to>.
func publishing(to, id uuid.UUID, body []byte) amqp.Publishing {
	return amqp.Publishing{ContentType: ContentType, Type: MessageType, AppId: to.String(), CorrelationId: uuid.NewString(),
		MessageId: id.String(), DeliveryMode: amqp.Persistent, Body: body}
}

// shareInfo reads, from the store, whether ws was created by a share and what its
// proposals say (cached: none of it changes).
func (p *publisher) shareInfo(ctx context.Context, ws uuid.UUID) (shareinfo.Info, error) {
	if info, ok := p.st.shares[ws]; ok {
		return info, nil
	}
	info, err := shareinfo.Read(ctx, p.store, ws)
	if err != nil {
		return shareinfo.Info{}, err
	}
	if p.st.shares == nil || len(p.st.shares) >= maxTracked {
		p.st.shares = map[uuid.UUID]shareinfo.Info{}
	}
	p.st.shares[ws] = info
	return info, nil
}

// shareEnd returns the position the binder must have passed before rec may be
// published: for an ItemsMovedIn, the last event of the share's atomic append (the
// last MemberAdded in S's stream with the same transaction), so that every member's
// queues are bound to multi#<S> first; for anything else rec's own position.
func shareEnd(ctx context.Context, s eventstore.Store, rec eventstore.RecordedEvent) (eventstore.Position, error) {
	end := rec.Position
	if rec.Type != domain.TypeItemsMovedIn {
		return end, nil
	}
	ev, err := domain.Decode(rec.Type, rec.Data)
	if err != nil {
		return end, nil // set aside when published
	}
	stream := domain.WorkspaceStream(ev.(domain.ItemsMovedIn).WorkspaceID)
	for from := rec.StreamVersion + 1; ; {
		evs, err := eventstore.ReadStreamBounded(ctx, s, stream, from, streamPage, streamPageBytes)
		if err != nil {
			return end, fmt.Errorf("read %s from %d: %w", stream, from, err)
		}
		for _, e := range evs {
			if e.Position.Commit != rec.Position.Commit {
				return end, nil
			}
			end = e.Position
		}
		if !eventstore.MayHaveMore(evs, streamPage, streamPageBytes) {
			return end, nil
		}
		from = evs[len(evs)-1].StreamVersion + 1
	}
}

// shareEnds returns shareEnd over s, remembering the ends it read: an ItemsMovedIn held
// by the horizon is asked about at every poll. It is called from the follower's
// goroutine only.
func shareEnds(s eventstore.Store) func(context.Context, eventstore.RecordedEvent) (eventstore.Position, error) {
	known := map[uuid.UUID]eventstore.Position{}
	return func(ctx context.Context, rec eventstore.RecordedEvent) (eventstore.Position, error) {
		if rec.Type != domain.TypeItemsMovedIn {
			return rec.Position, nil
		}
		if end, ok := known[rec.ID]; ok {
			return end, nil
		}
		end, err := shareEnd(ctx, s, rec)
		if err != nil {
			return end, err
		}
		if len(known) >= 1024 {
			clear(known)
		}
		known[rec.ID] = end
		return end, nil
	}
}
