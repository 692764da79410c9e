package rpc

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// createShareProposal hands the request to the service (PROTOCOL.md §8). It is async:
// the share's outcome reaches devices as events, published by the notifier after the
// binder bound the members' queues; request-level errors go to reply_to. A repeated
// requestId publishes the share's two notifyCommits again (W's movedOut, S's movedIn), as
// a replayed commit does (§5), never ahead of their first publication.
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
	if !res.Replayed || res.MovedOut == nil {
		return nil, nil
	}
	// Never ahead of the notifier's first publication of either half.
	last := res.Position
	if res.MovedIn != nil && last.Less(res.MovedInPos) {
		last = res.MovedInPos
	}
	if s.waitPast(ctx, s.cfg.Published, last) != nil {
		return nil, nil // the notifier still owes them and will publish them
	}
	out, err := wire.EncodeNotifyMovedOut(res.MovedOutID.String(), *res.MovedOut)
	if err != nil {
		return nil, fmt.Errorf("share %s: encode the notification of workspace %s: %w", r.RequestID, res.SourceID, err)
	}
	type note struct {
		ws   uuid.UUID
		body []byte
	}
	msgs := []note{{res.SourceID, out}}
	if res.MovedIn != nil {
		in, err := wire.EncodeNotifyMovedIn(res.MovedInID.String(), *res.MovedIn)
		if err != nil {
			return nil, fmt.Errorf("share %s: encode the notification of workspace %s: %w", r.RequestID, res.WorkspaceID, err)
		}
		msgs = append(msgs, note{res.WorkspaceID, in})
	}
	user := r.UserID.String()
	for _, m := range msgs {
		// At most once per ReplayWindow and within the user's replay bytes, as commits.
		if !s.replays.claim(m.ws, r.RequestID, user, int64(len(m.body))) {
			continue
		}
		if err := sess.republish(ctx, m.ws, m.body); err != nil {
			s.replays.release(m.ws, r.RequestID, user, int64(len(m.body)))
			return nil, fmt.Errorf("share %s: republish the notification of workspace %s: %w", r.RequestID, m.ws, err)
		}
	}
	return nil, nil
}
