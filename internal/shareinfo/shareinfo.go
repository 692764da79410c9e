// Package shareinfo reads, from the event store, what a notifyShareProposal says of a
// workspace (PROTOCOL.md §8 rule 4): whether a share created it, its folder, owner, the
// owner's name and isEncrypted. It owns that reading only, for the publishers of both
// wires (transport/notify, transport/legacy); it never writes and never caches (callers
// cache: none of it changes once written).
package shareinfo

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Info is what a proposal says of a workspace a share created.
type Info struct {
	Shared      bool // created by a share (its second event is ItemsMovedIn)
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

// Read reads ws's first two events and its owner's account: Shared false (and nothing
// else set) when ws was not created by a share. An error is the store's.
func Read(ctx context.Context, s Reader, ws uuid.UUID) (Info, error) {
	evs, err := s.ReadStream(ctx, domain.WorkspaceStream(ws), 1, 2)
	if err != nil {
		return Info{}, fmt.Errorf("read the start of workspace %s: %w", ws, err)
	}
	if len(evs) != 2 || evs[0].Type != domain.TypeWorkspaceCreated || evs[1].Type != domain.TypeItemsMovedIn {
		return Info{}, nil
	}
	c, err1 := domain.Decode(evs[0].Type, evs[0].Data)
	in, err2 := domain.Decode(evs[1].Type, evs[1].Data)
	created, ok1 := c.(domain.WorkspaceCreated)
	moved, ok2 := in.(domain.ItemsMovedIn)
	if err1 != nil || err2 != nil || !ok1 || !ok2 {
		return Info{}, nil
	}
	info := Info{Shared: true, Folder: moved.FolderID, Owner: created.OwnerID, IsEncrypted: created.IsEncrypted, Name: created.Name,
		RequestID: moved.RequestID}
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
