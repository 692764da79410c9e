package rpc

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// createShareProposal hands the request to the service (PROTOCOL.md §8). It is async:
// the share's outcome reaches devices as events, published by the notifier after the
// binder bound the members' queues; request-level errors go to reply_to. A repeated
// requestId publishes W's movedOut notification again, as a replayed commit does (§5),
// never ahead of its first publication.
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
	if !res.Replayed || res.MovedOut == nil || s.waitPast(ctx, s.cfg.Published, res.Position) != nil {
		return nil, nil
	}
	ws, user := res.SourceID, r.UserID.String()
	body, err := wire.EncodeNotifyMovedOut(res.MovedOutID.String(), *res.MovedOut)
	if err != nil {
		return nil, fmt.Errorf("share %s: encode the notification of workspace %s: %w", r.RequestID, ws, err)
	}
	if !s.replays.claim(ws, r.RequestID, user, int64(len(body))) {
		return nil, nil
	}
	if err := sess.republish(ctx, ws, body); err != nil {
		s.replays.release(ws, r.RequestID, user, int64(len(body)))
		return nil, fmt.Errorf("share %s: republish the notification of workspace %s: %w", r.RequestID, ws, err)
	}
	return nil, nil
}
