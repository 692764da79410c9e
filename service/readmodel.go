package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/projections"
)

// Projections adapts the projections' queries to the ReadModel the service reads.
type Projections struct{ Q *projections.Queries }

var _ ReadModel = Projections{}

// tooLarge marks an answer the read models refused as too large with ErrResultTooLarge.
func tooLarge(err error) error {
	if errors.Is(err, projections.ErrResultTooLarge) {
		return fmt.Errorf("%w: %w", ErrResultTooLarge, err)
	}
	return err
}

// Changes implements ReadModel.
func (p Projections) Changes(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, int64, error) {
	items, v, err := p.Q.Changes(ctx, ws)
	return items, v, tooLarge(err)
}

// ChangesSince implements ReadModel.
func (p Projections) ChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (ChangesPage, error) {
	pg, err := p.Q.ChangesSince(ctx, ws, since, limit)
	if err != nil {
		return ChangesPage{}, err
	}
	return ChangesPage(pg), nil
}

// ItemVersions implements ReadModel.
func (p Projections) ItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	vs, err := p.Q.ItemVersions(ctx, ws, item)
	return vs, tooLarge(err)
}

// WorkspacesOf implements ReadModel.
func (p Projections) WorkspacesOf(ctx context.Context, user uuid.UUID) ([]WorkspaceInfo, error) {
	ws, err := p.Q.WorkspacesOf(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]WorkspaceInfo, len(ws))
	for i, w := range ws {
		out[i] = WorkspaceInfo(w)
	}
	return out, nil
}

// Membership implements ReadModel.
func (p Projections) Membership(ctx context.Context, ws, user uuid.UUID) (bool, bool, error) {
	w, found, err := p.Q.Workspace(ctx, ws)
	if err != nil || !found {
		return false, false, err
	}
	for _, m := range w.Members {
		if m.UserID == user {
			return true, true, nil
		}
	}
	return true, false, nil
}

// UserByEmail implements ReadModel.
func (p Projections) UserByEmail(ctx context.Context, email string) (Account, bool, error) {
	u, ok, err := p.Q.UserByEmail(ctx, email)
	if err != nil || !ok || u.Removed {
		return Account{}, false, err
	}
	return Account{UserID: u.ID, Name: u.Name, Email: u.Email, QuotaLimit: u.QuotaLimit}, true, nil
}

// OwnerUsage implements ReadModel.
func (p Projections) OwnerUsage(ctx context.Context, owner, except uuid.UUID) (int64, error) {
	if except == uuid.Nil {
		return p.Q.OwnerUsage(ctx, owner)
	}
	return p.Q.OwnerUsageExcept(ctx, owner, except)
}
