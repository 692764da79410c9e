package service

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// checkMount refuses, with InvalidRequest, a mount point (updateWorkspace's
// parentItemId) of workspace ws for user that would nest shared workspaces (PROTOCOL.md
// §8: "Nested sharing ... is refused"): an item of a shared workspace the user is a
// member of, ws itself included, or the mount point of another of the user's workspaces
// (its content is that workspace's). It reads the user's workspaces and looks the item
// up in each shared one through the read model, as foreignItem does, so it sees what
// was notified before the request; a user who is not a member of ws is left to the
// decision to refuse.
func (s *Service) checkMount(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) error {
	wss, err := s.Workspaces(ctx, user)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(wss, func(w protocol.WorkspaceInfo) bool { return w.ID == ws }) {
		return nil
	}
	for _, w := range wss {
		if w.ID != ws && w.ParentItemID != nil && *w.ParentItemID == item {
			return fmt.Errorf("%w: item %d is the mount point of workspace %s: mounting workspace %s there would nest shared workspaces",
				protocol.ErrInvalid, item, w.ID, ws)
		}
		if !w.IsShared {
			continue
		}
		vs, err := read(ctx, s.reads, func(ctx context.Context) ([]domain.ItemMetadata, error) {
			return s.reads.ItemVersions(ctx, w.ID, item)
		})
		if err != nil {
			return fmt.Errorf("look up item %d in %s: %w", item, w.ID, err)
		}
		if len(vs) > 0 {
			return fmt.Errorf("%w: item %d is in shared workspace %s: mounting workspace %s there would nest shared workspaces",
				protocol.ErrInvalid, item, w.ID, ws)
		}
	}
	return nil
}
