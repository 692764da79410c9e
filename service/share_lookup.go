package service

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// foreignItem explains why item, which is not in the caller's personal workspace
// source, cannot be shared (PROTOCOL.md §8 rule 1), from one lookup of the item's
// workspace in the read model (item ids are unique across workspaces, rule 5):
//   - no workspace holds it: InvalidRequest (the id names no item);
//   - a workspace the caller is a member of (a shared one; or source itself, when the
//     read model has not yet seen the item leave it): InvalidRequest (nested sharing);
//   - a workspace the caller is not a member of: Unauthorized.
//
// The read model may lag the store by the projector's lag: an item created a moment ago
// in another user's workspace may still read as no item (InvalidRequest rather than
// Unauthorized). Either way nothing is changed.
func (s *Service) foreignItem(ctx context.Context, user, source uuid.UUID, item domain.ItemID) error {
	type home struct {
		ws     uuid.UUID
		member bool
	}
	h, err := read(ctx, s.reads, func(ctx context.Context) (home, error) {
		ws, member, err := s.reads.ItemWorkspace(ctx, item, user)
		return home{ws, member}, err
	})
	switch {
	case err != nil:
		return fmt.Errorf("look up the workspace of item %d: %w", item, err)
	case h.ws == uuid.Nil:
		return fmt.Errorf("%w: no item %d", protocol.ErrInvalid, item)
	case !h.member:
		return fmt.Errorf("%w: item %d is in a workspace user %s is not a member of", protocol.ErrUnauthorized, item, user)
	case h.ws == source:
		return fmt.Errorf("%w: item %d is no longer in workspace %s", protocol.ErrInvalid, item, source)
	}
	return fmt.Errorf("%w: item %d is in shared workspace %s, not in the caller's personal workspace (nested sharing)",
		protocol.ErrInvalid, item, h.ws)
}
