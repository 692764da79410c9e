package legacy

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/shareinfo"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// What the legacy wire can say of a share (PROTOCOL.md §8; docs/legacy.md). StackSync
// told a share with ShareProposalNotification only, to multi#<userId> of the owner and
// of each member; the desktop then binds multi#<S> and reads S with getChanges. So does
// this publisher:
//
//   - ItemsMovedIn (S's move-in): the owner's notifyShareProposal;
//   - MemberAdded to a workspace a share created: that member's notifyShareProposal.
//
// W's movedOut has no shape on this wire (CommitNotification has no field for it), and
// S's movedIn would reach no desktop (ObjectMQ binds multi#<S> only once the desktop
// has heard of S, from the proposal): neither is published. A proposal's requestId is
// that of the re-share that added the member (MemberAdded.RequestID), else that of the
// share that created S.

// maxShareInfos bounds the cache of share infos (they never change; it is only dropped).
const maxShareInfos = 4096

// publishProposal publishes the notifyShareProposal an ItemsMovedIn (to the owner) or
// a MemberAdded of a shared workspace (to the member) gives; nil for a MemberAdded of a
// workspace no share created, or an event passed over. An error is the store's or the
// broker's (retried).
func (p *Publisher) publishProposal(ctx context.Context, ch *amqp.Channel, e eventstore.RecordedEvent, declared map[uuid.UUID]bool) (*amqp.DeferredConfirmation, error) {
	ev, err := domain.Decode(e.Type, e.Data)
	if err != nil {
		p.log.Error("legacy publisher: undecodable event passed over", "event", e.ID, "position", e.Position, "err", err)
		return nil, nil
	}
	var ws, to uuid.UUID
	var name, requestID string
	k := 0
	switch x := ev.(type) {
	case domain.ItemsMovedIn:
		if x.Part > 0 { // a later part of a split move-in: the first part gave the proposal
			return nil, nil
		}
		ws, k = x.WorkspaceID, 1
	case domain.MemberAdded:
		ws, to, name, requestID = x.WorkspaceID, x.UserID, x.Name, x.RequestID
	default:
		return nil, nil
	}
	info, err := p.shareInfo(ctx, ws)
	if err != nil || !info.Shared {
		return nil, err
	}
	if k == 1 {
		to, name = info.Owner, info.Name
	}
	if requestID == "" {
		requestID = info.RequestID
	}
	// The envelope id is the JSON notifier's for the same proposal.
	id := wire.ProposalEventID(e.ID, k).String()
	body, err := EncodeEvent(id, MethodNotifyShareProposal, ShareProposalNotification(Proposal{RequestID: requestID,
		WorkspaceID: ws, FolderName: name, FolderID: info.Folder, OwnerID: info.Owner, OwnerName: info.OwnerName,
		IsEncrypted: info.IsEncrypted}, p.cfg.Storage))
	if err == nil && len(body) > p.cfg.MaxMessageBytes {
		err = fmt.Errorf("%d bytes exceed the limit of %d", len(body), p.cfg.MaxMessageBytes)
	}
	if err != nil {
		p.log.Error("legacy publisher: proposal passed over", "workspace", ws, "user", to, "err", err)
		return nil, nil
	}
	if !declared[to] {
		if err := topology.DeclareEventExchange(ch, to); err != nil {
			return nil, err
		}
		declared[to] = true
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(to), "", false, false, eventMessage(to, id, body))
	if err != nil {
		return nil, fmt.Errorf("publish the proposal of workspace %s to %s: %w", ws, to, err)
	}
	return dc, nil
}

// shareInfo reads what proposals say of ws, once (it never changes).
func (p *Publisher) shareInfo(ctx context.Context, ws uuid.UUID) (shareinfo.Info, error) {
	if info, ok := p.shares[ws]; ok {
		return info, nil
	}
	info, err := shareinfo.Read(ctx, p.store, ws)
	if err != nil {
		return shareinfo.Info{}, fmt.Errorf("legacy publisher: %w", err)
	}
	if len(p.shares) >= maxShareInfos {
		clear(p.shares)
	}
	p.shares[ws] = info
	return info, nil
}
