package rpc

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// createShareProposal hands the request to the service (PROTOCOL.md §8). It is async:
// the share's outcome reaches devices as events, published by the notifier after the
// binder bound the members' queues; request-level errors go to reply_to. A repeated
// requestId publishes the share's notifications again: its two notifyCommits (W's
// movedOut, S's movedIn) and its notifyShareProposals (the owner's and each member's it
// added), never ahead of their first publication, so after the binder bound the queues.
func (s *Server) createShareProposal(ctx context.Context, sess *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseCreateShareProposal(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	res, err := s.svc.Share(ctx, service.ShareRequest{RequestID: r.RequestID, UserID: r.UserID, ItemID: r.ItemID,
		Emails: r.Emails, IsEncrypted: r.IsEncrypted})
	if err != nil {
		return nil, err
	}
	if !res.Replayed {
		return nil, nil
	}
	// Never ahead of the notifier's first publication of any of them: the last is the
	// share's last event in S (the last member's proposal).
	last := res.Position
	for _, p := range []eventstore.Position{res.MovedInPos, res.ProposalsPos} {
		if last.Less(p) {
			last = p
		}
	}
	if s.waitPast(ctx, s.cfg.Published, last) != nil {
		return nil, nil // the notifier still owes them and will publish them
	}
	msgs, err := shareReplayMessages(res)
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", r.RequestID, err)
	}
	user := r.UserID.String()
	for _, m := range msgs {
		// At most once per ReplayWindow and within the user's replay bytes, as commits.
		if !s.replays.claim(m.to, r.RequestID, user, int64(len(m.body))) {
			continue
		}
		if err := sess.republish(ctx, m.to, m.body); err != nil {
			s.replays.release(m.to, r.RequestID, user, int64(len(m.body)))
			return nil, fmt.Errorf("share %s: republish to %s: %w", r.RequestID, m.to, err)
		}
	}
	return nil, nil
}

// note is a message to multi#<to>.
type note struct {
	to   uuid.UUID
	body []byte
}

// shareReplayMessages renders what a replayed share publishes again, as the notifier
// first did: W's movedOut, S's movedIn (neither for a share that only added members),
// then each proposal on multi#<user>.
func shareReplayMessages(res service.ShareResult) ([]note, error) {
	var msgs []note
	if res.MovedOut != nil { // nil for a share that only added members
		out, err := wire.EncodeNotifyMovedOut(res.MovedOutID.String(), *res.MovedOut)
		if err != nil {
			return nil, fmt.Errorf("encode the notification of workspace %s: %w", res.SourceID, err)
		}
		msgs = append(msgs, note{res.SourceID, out})
	}
	if res.MovedIn != nil {
		in, err := wire.EncodeNotifyMovedIn(res.MovedInID.String(), *res.MovedIn)
		if err != nil {
			return nil, fmt.Errorf("encode the notification of workspace %s: %w", res.WorkspaceID, err)
		}
		msgs = append(msgs, note{res.WorkspaceID, in})
	}
	for _, p := range res.Proposals {
		k := 0
		if p.Owner {
			k = 1 // the second message of S's ItemsMovedIn, as the notifier numbers it
		}
		body, err := wire.EncodeNotifyShareProposal(wire.ProposalEventID(p.EventID, k).String(), p.WorkspaceID, p.FolderName,
			p.FolderID, p.OwnerID, p.OwnerName, p.IsEncrypted)
		if err != nil {
			return nil, fmt.Errorf("encode the proposal to %s: %w", p.UserID, err)
		}
		msgs = append(msgs, note{p.UserID, body})
	}
	return msgs, nil
}
