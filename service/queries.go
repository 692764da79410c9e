package service

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// AccountInfo answers getAccountInfo. With a caller (broker-verified identity) only the
// caller's own e-mail is answered; any other is UserNotFound. Without one (trust mode)
// any user's account is answered.
func (s *Service) AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (protocol.Account, error) {
	// Checked before any query: a NUL or invalid UTF-8 would fail in PostgreSQL.
	if err := domain.CheckText("email", strings.TrimSpace(email), domain.MaxEmailBytes); err != nil {
		return protocol.Account{}, fmt.Errorf("%w: account: %w", protocol.ErrInvalid, err)
	}
	type found struct {
		acct protocol.Account
		ok   bool
	}
	f, err := read(ctx, s.reads, func(ctx context.Context) (found, error) {
		a, ok, err := s.reads.AccountByEmail(ctx, strings.ToLower(strings.TrimSpace(email)))
		return found{a, ok}, err
	})
	acct, ok := f.acct, f.ok
	if err != nil {
		return protocol.Account{}, fmt.Errorf("account of %s: %w", email, err)
	}
	if !ok || (caller != nil && acct.UserID != *caller) {
		return protocol.Account{}, fmt.Errorf("%w: %s", protocol.ErrUserNotFound, email)
	}
	used, err := read(ctx, s.reads, func(ctx context.Context) (int64, error) { return s.reads.OwnerUsageExcept(ctx, acct.UserID, uuid.Nil) })
	if err != nil {
		return protocol.Account{}, fmt.Errorf("account of %s: %w", email, err)
	}
	acct.QuotaUsed = used
	return acct, nil
}

// Workspaces answers getWorkspaces: the user's workspaces, the personal one first.
func (s *Service) Workspaces(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	ws, err := read(ctx, s.reads, func(ctx context.Context) ([]protocol.WorkspaceInfo, error) { return s.reads.WorkspacesOf(ctx, user) })
	if err != nil {
		return nil, fmt.Errorf("workspaces of %s: %w", user, err)
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: user %s", protocol.ErrNoWorkspaces, user)
	}
	return ws, nil
}

// authorize checks that ws exists and user is a member (PROTOCOL.md §4 order).
func (s *Service) authorize(ctx context.Context, user, ws uuid.UUID) error {
	m, err := read(ctx, s.reads, func(ctx context.Context) ([2]bool, error) {
		exists, member, err := s.reads.Membership(ctx, ws, user)
		return [2]bool{exists, member}, err
	})
	exists, member := m[0], m[1]
	if err != nil {
		return fmt.Errorf("membership of %s in %s: %w", user, ws, err)
	}
	if !exists {
		return fmt.Errorf("%w: %s", protocol.ErrWorkspaceNotFound, ws)
	}
	if !member {
		return fmt.Errorf("%w: user %s is not a member of workspace %s", protocol.ErrUnauthorized, user, ws)
	}
	return nil
}

// Changes answers getChanges: the latest version of every item, parents first.
func (s *Service) Changes(ctx context.Context, user, ws uuid.UUID) ([]domain.ItemMetadata, error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return nil, err
	}
	items, err := read(ctx, s.reads, func(ctx context.Context) ([]domain.ItemMetadata, error) {
		items, _, err := s.reads.Changes(ctx, ws)
		return items, err
	})
	if err != nil {
		return nil, fmt.Errorf("changes of %s: %w", ws, err)
	}
	return items, nil
}

// ChangesSince answers getChangesSince.
func (s *Service) ChangesSince(ctx context.Context, user, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return protocol.ChangesPage{}, err
	}
	p, err := read(ctx, s.reads, func(ctx context.Context) (protocol.ChangesPage, error) {
		return s.reads.ChangesSince(ctx, ws, since, limit)
	})
	if err != nil {
		return protocol.ChangesPage{}, fmt.Errorf("changes of %s since %d: %w", ws, since, err)
	}
	if since > p.WorkspaceVersion {
		// The device claims versions this workspace never had (a server restored from
		// an older backup, or another workspace's number): say so instead of paging.
		return protocol.ChangesPage{}, fmt.Errorf("%w: sinceVersion %d is ahead of workspace %s (at version %d): catch up from 0",
			protocol.ErrInvalid, since, ws, p.WorkspaceVersion)
	}
	return p, nil
}

// ItemVersions answers getItemVersions.
func (s *Service) ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return nil, err
	}
	vs, err := read(ctx, s.reads, func(ctx context.Context) ([]domain.ItemMetadata, error) { return s.reads.ItemVersions(ctx, ws, item) })
	if err != nil {
		return nil, fmt.Errorf("versions of item %d in %s: %w", item, ws, err)
	}
	return vs, nil
}
