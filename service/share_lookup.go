package service

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// foreignItem explains why item, which is not in the caller's personal workspace
// source, cannot be shared (PROTOCOL.md §8 rule 1): InvalidRequest when it is in
// another workspace the caller is a member of (a shared one: nested sharing), and
// Unauthorized otherwise. An item of a workspace the caller is not a member of and an
// id that names no item are answered alike, so that the answer reveals nothing of
// other users' workspaces (as commits do, §5 rule 2).
func (s *Service) foreignItem(ctx context.Context, user, source uuid.UUID, item domain.ItemID) error {
	wss, err := s.Workspaces(ctx, user)
	if err != nil {
		return err
	}
	for _, w := range wss {
		if w.ID == source {
			continue
		}
		vs, err := read(ctx, s.reads, func(ctx context.Context) ([]domain.ItemMetadata, error) {
			return s.reads.ItemVersions(ctx, w.ID, item)
		})
		if err != nil {
			return fmt.Errorf("look up item %d in %s: %w", item, w.ID, err)
		}
		if len(vs) > 0 {
			return fmt.Errorf("%w: item %d is in shared workspace %s, not in the caller's personal workspace (nested sharing)",
				protocol.ErrInvalid, item, w.ID)
		}
	}
	return fmt.Errorf("%w: item %d is in no workspace of user %s", protocol.ErrUnauthorized, item, user)
}
