package service

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// ShareProposal is one notifyShareProposal of a share (PROTOCOL.md §8 rule 4): to
// UserID, whose name for the workspace is FolderName. EventID is the event it was
// published with: S's ItemsMovedIn for the owner (whose message id the notifier derives
// from it), the member's MemberAdded for a member.
type ShareProposal struct {
	EventID     uuid.UUID
	Owner       bool // the owner's (the message id is derived from EventID)
	UserID      uuid.UUID
	FolderName  string
	WorkspaceID uuid.UUID
	FolderID    domain.ItemID
	OwnerID     uuid.UUID
	OwnerName   string
	IsEncrypted bool
}

// shareReplay answers a repeated share request with the original ItemsMovedOut, S's
// ItemsMovedIn and the proposals of the share, read back from both streams: nothing is
// appended.
func (s *Service) shareReplay(ctx context.Context, stream string, cmd domain.ShareFolder, d domain.ShareDecision) (ShareResult, error) {
	orig, err := s.readMove(ctx, stream, d.ReplayOf) // its parts joined
	if err != nil {
		return ShareResult{}, err
	}
	out, ok := orig.event.(domain.ItemsMovedOut)
	if !ok {
		return ShareResult{}, fmt.Errorf("share replay: %s@%d is a %s", stream, d.ReplayOf, orig.event.EventType())
	}
	res := ShareResult{WorkspaceID: d.TargetID, SourceID: cmd.SourceID, MovedOut: &out, MovedOutID: orig.eventID,
		Position: orig.position, Replayed: true}
	if err := s.readShareTarget(ctx, out.RequestID, d.TargetID, &res); err != nil {
		return ShareResult{}, fmt.Errorf("share replay %q: %w", out.RequestID, err)
	}
	return res, nil
}

// readShareTarget reads the share's append to S (WorkspaceCreated, ItemsMovedIn in one
// or more parts, one MemberAdded per member), recognised by the event ids shareAppend
// derived from the requestId, into res: MovedIn (joined, with its first part's id and
// place) and the proposals.
func (s *Service) readShareTarget(ctx context.Context, requestID string, target uuid.UUID, res *ShareResult) error {
	stream := domain.WorkspaceStream(target)
	key := "share:" + requestID
	var created *domain.WorkspaceCreated
	var members []ShareProposal
	var parts []domain.ItemsMovedIn
	done := func() error {
		if len(parts) > 0 {
			in, err := domain.JoinMovedIn(parts)
			if err != nil {
				return fmt.Errorf("%s: %w", stream, err)
			}
			res.MovedIn = &in
		}
		return s.shareProposals(ctx, created, members, res)
	}
	for from := uint64(1); ; {
		recs, err := s.store.ReadStream(ctx, stream, from, 100)
		if err != nil {
			return fmt.Errorf("read %s from %d: %w", stream, from, err)
		}
		for _, r := range recs {
			if r.ID != eventID(stream, fmt.Sprintf("%s\x00%d", key, r.StreamVersion-1)) {
				return done()
			}
			ev, err := domain.Decode(r.Type, r.Data)
			if err != nil {
				return fmt.Errorf("decode %s@%d: %w", stream, r.StreamVersion, err)
			}
			res.ProposalsPos = r.Position
			switch e := ev.(type) {
			case domain.WorkspaceCreated:
				created = &e
			case domain.ItemsMovedIn:
				if e.Part == 0 {
					res.MovedInID, res.MovedInPos = r.ID, r.Position
				}
				parts = append(parts, e)
			case domain.MemberAdded:
				members = append(members, ShareProposal{EventID: r.ID, UserID: e.UserID, FolderName: e.Name})
			}
		}
		if len(recs) < 100 {
			return done()
		}
		from = recs[len(recs)-1].StreamVersion + 1
	}
}

// shareProposals fills res.Proposals from the share's WorkspaceCreated and members, as
// the notifier renders them (owner first, with the owner's account name); none when the
// append read was not a share's (no WorkspaceCreated or ItemsMovedIn).
func (s *Service) shareProposals(ctx context.Context, created *domain.WorkspaceCreated, members []ShareProposal, res *ShareResult) error {
	if created == nil || res.MovedIn == nil {
		return nil
	}
	owner, err := s.loadUser(ctx, created.OwnerID, false)
	if err != nil {
		return fmt.Errorf("owner %s: %w", created.OwnerID, err)
	}
	all := append([]ShareProposal{{EventID: res.MovedInID, Owner: true, UserID: created.OwnerID, FolderName: created.Name}}, members...)
	for i := range all {
		p := &all[i]
		p.WorkspaceID, p.FolderID, p.OwnerID, p.OwnerName, p.IsEncrypted = created.WorkspaceID, res.MovedIn.FolderID,
			created.OwnerID, owner.Name(), created.IsEncrypted
	}
	res.Proposals = all
	return nil
}

// reshareReplay answers a repeated request of a share that added members to a workspace
// shared before: nothing is appended, and the result holds the proposals it gave, one per
// member it added, with the ids of their MemberAdded events (shareAppend derived them from
// the requestId, in order), so that they are published again as the notifier first did.
// ProposalsPos is the target's latest membership change, at or after those events.
func (s *Service) reshareReplay(ctx context.Context, cmd domain.ShareFolder, d domain.ShareDecision,
	dst *entry[*domain.Workspace]) (ShareResult, error) {
	st := dst.state
	owner, err := s.loadUser(ctx, st.OwnerID(), false)
	if err != nil {
		return ShareResult{}, fmt.Errorf("share replay %q: owner %s: %w", cmd.RequestID, st.OwnerID(), err)
	}
	stream := domain.WorkspaceStream(d.TargetID)
	res := ShareResult{WorkspaceID: d.TargetID, SourceID: cmd.SourceID, Replayed: true, ProposalsPos: dst.membersAt}
	for i, m := range d.ReplayMembers {
		res.Proposals = append(res.Proposals, ShareProposal{
			EventID: eventID(stream, fmt.Sprintf("share:%s\x00%d", cmd.RequestID, i)), UserID: m.UserID, FolderName: m.Name,
			WorkspaceID: d.TargetID, FolderID: cmd.FolderID, OwnerID: st.OwnerID(), OwnerName: owner.Name(), IsEncrypted: st.IsEncrypted()})
	}
	return res, nil
}
