// Package shareinfo reads, from the event store, what a notifyShareProposal says of a
// workspace (PROTOCOL.md §8 rule 4): whether a share created it, its folder, owner, the
// owner's name and isEncrypted. It owns that reading only, for the publishers of both
// wires (transport/notify, transport/legacy); it never writes and never caches (callers
// cache: none of it changes once written).
package shareinfo

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Info is what a proposal says of a workspace a share created (and whether a workspace
// exists and was created shared).
type Info struct {
	// Exists: the workspace has events (a workspace that exists and was not created by
	// a share never becomes one, so a caller may cache an Info with Exists set).
	Exists      bool
	IsShared    bool      // created shared (by a share, or by an operator)
	Created     time.Time // the workspace's creation
	Shared      bool      // created by a share (its second event is ItemsMovedIn)
	From        uuid.UUID // the workspace F stayed in (the owner's personal one)
	At          time.Time // of the share that created the workspace
	Folder      domain.ItemID
	Owner       uuid.UUID
	OwnerName   string
	IsEncrypted bool
	Name        string // the owner's name for the workspace: the folder's filename
	RequestID   string // of the share that created the workspace
}

// Reader is the part of the store Read uses.
type Reader interface {
	ReadStream(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error)
}

// Read reads ws's first two events and, for a workspace a share created, its owner's
// account. Exists is false when ws has no event yet; IsShared and Created are set for
// every workspace that exists; Shared and the rest only for one a share created. An
// error is the store's.
func Read(ctx context.Context, s Reader, ws uuid.UUID) (Info, error) {
	evs, err := s.ReadStream(ctx, domain.WorkspaceStream(ws), 1, 2)
	if err != nil {
		return Info{}, fmt.Errorf("read the start of workspace %s: %w", ws, err)
	}
	if len(evs) == 0 {
		return Info{}, nil
	}
	info := Info{Exists: true}
	c, err := domain.Decode(evs[0].Type, evs[0].Data)
	created, ok := c.(domain.WorkspaceCreated)
	if err != nil || !ok {
		return info, nil
	}
	info.IsShared, info.Created = created.IsShared, created.At
	if len(evs) != 2 || evs[1].Type != domain.TypeItemsMovedIn {
		return info, nil
	}
	in, err := domain.Decode(evs[1].Type, evs[1].Data)
	moved, ok := in.(domain.ItemsMovedIn)
	if err != nil || !ok {
		return info, nil
	}
	info.Shared, info.From, info.At, info.Folder, info.RequestID = true, moved.FromWorkspaceID, moved.At, moved.FolderID, moved.RequestID
	info.Owner, info.IsEncrypted, info.Name = created.OwnerID, created.IsEncrypted, created.Name
	if info.OwnerName, err = UserName(ctx, s, created.OwnerID); err != nil {
		return Info{}, err
	}
	return info, nil
}

// UserName reads the name user's account was created with ("" when there is none).
func UserName(ctx context.Context, s Reader, user uuid.UUID) (string, error) {
	evs, err := s.ReadStream(ctx, domain.UserStream(user), 1, 1)
	if err != nil {
		return "", fmt.Errorf("read user %s: %w", user, err)
	}
	if len(evs) == 0 || evs[0].Type != domain.TypeUserCreated {
		return "", nil
	}
	ev, err := domain.Decode(evs[0].Type, evs[0].Data)
	if err != nil {
		return "", nil
	}
	u, _ := ev.(domain.UserCreated)
	return u.Name, nil
}
