package rpctest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/projections/memmodel"
	"github.com/stacksync-es/syncservice/service"
)

// Call records one call of the Service.
type Call struct {
	Method    string // the rpc.Service method, e.g. "Commit"
	RequestID string // "" for methods whose request carries none
	User      uuid.UUID
}

// Service is the real service (package service) on memstore, an in-memory read model
// (projections/memmodel) and an in-memory id allocator, with what the transport's tests
// need around it: a hook that runs at the start of every call, a record of the calls,
// and shortcuts to set up users and workspaces. It decides nothing itself.
type Service struct {
	svc   *service.Service
	store *memstore.Store

	mu    sync.Mutex
	hook  func(ctx context.Context, c Call) error
	calls []Call
	names map[uuid.UUID]string // workspace → its name, for AddMember
}

// NewService returns a service over an empty store.
func NewService() *Service {
	store := memstore.New()
	cfg := service.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	svc, err := service.New(cfg, store, memmodel.New(store), &itemids.Memory{})
	if err != nil {
		panic(fmt.Sprintf("rpctest: new service: %v", err)) // a fixed, valid config
	}
	return &Service{svc: svc, store: store, names: map[uuid.UUID]string{}}
}

// Real returns the service the calls reach.
func (s *Service) Real() *service.Service { return s.svc }

// AddUser creates the user id (e-mail addresses are not checked for uniqueness here) with
// a personal workspace named name, and returns the workspace's id.
func (s *Service) AddUser(id uuid.UUID, name, email string) uuid.UUID {
	s.createUser(id, name, email)
	return s.createWorkspace(id, name, false)
}

// AddWorkspace creates a shared workspace owned by owner, creating the owner first if
// it is no user yet.
func (s *Service) AddWorkspace(owner uuid.UUID, name string) uuid.UUID {
	if v, err := s.store.StreamVersion(context.Background(), domain.UserStream(owner)); err != nil || v == 0 {
		s.createUser(owner, "owner", owner.String()+"@example.com")
	}
	return s.createWorkspace(owner, name, true)
}

// AddMember makes user a member of workspace ws, under the workspace's name.
func (s *Service) AddMember(ws, user uuid.UUID) {
	s.mu.Lock()
	name := s.names[ws]
	s.mu.Unlock()
	if err := s.svc.AddMember(context.Background(), ws, user, name); err != nil {
		panic(fmt.Sprintf("rpctest: add member %s to %s: %v", user, ws, err))
	}
}

// createUser appends the user's creation as the domain decides it. The service creates
// users with fresh ids only; the tests need to choose them (their broker logins).
func (s *Service) createUser(id uuid.UUID, name, email string) {
	d, err := domain.NewUser(id).Decide(domain.CreateUser{UserID: id, Name: name, Email: email, At: time.Now().UTC()})
	if err == nil && len(d.Events) != 1 {
		err = fmt.Errorf("%d events", len(d.Events))
	}
	if err == nil {
		var typ string
		var data []byte
		if typ, data, err = domain.Encode(d.Events[0]); err == nil {
			_, err = s.store.Append(context.Background(), domain.UserStream(id), eventstore.Exact(0),
				eventstore.Record{ID: uuid.New(), Type: typ, Data: data})
		}
	}
	if err != nil {
		panic(fmt.Sprintf("rpctest: create user %s: %v", id, err))
	}
}

func (s *Service) createWorkspace(owner uuid.UUID, name string, shared bool) uuid.UUID {
	ws, err := s.svc.CreateWorkspace(context.Background(), owner, name, shared)
	if err != nil {
		panic(fmt.Sprintf("rpctest: create workspace %q of %s: %v", name, owner, err))
	}
	s.mu.Lock()
	s.names[ws] = name
	s.mu.Unlock()
	return ws
}

// Calls returns the calls made so far.
func (s *Service) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CountCalls counts the calls of method with requestID ("" = any).
func (s *Service) CountCalls(method, requestID string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method && (requestID == "" || c.RequestID == requestID) {
			n++
		}
	}
	return n
}

// SetHook sets the hook that runs at the start of every call; a non-nil error is
// returned as the call's result. It may block (honouring ctx) or panic. Safe while the
// server runs.
func (s *Service) SetHook(h func(ctx context.Context, c Call) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

func (s *Service) enter(ctx context.Context, c Call) error {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		return hook(ctx, c)
	}
	return nil
}

// WorkspaceVersion returns the current version of ws.
func (s *Service) WorkspaceVersion(ws uuid.UUID) int64 {
	recs, err := s.store.ReadStream(context.Background(), domain.WorkspaceStream(ws), 1, 1<<30)
	if err != nil {
		panic(fmt.Sprintf("rpctest: read %s: %v", ws, err))
	}
	w := domain.NewWorkspace(ws)
	for _, r := range recs {
		if ev, err := domain.Decode(r.Type, r.Data); err == nil {
			w.Evolve(ev)
		}
	}
	return w.Version()
}

// CommitResultOf returns the recorded result of requestID in ws.
func (s *Service) CommitResultOf(ws uuid.UUID, requestID string) (service.CommitResult, bool) {
	recs, err := s.store.ReadStream(context.Background(), domain.WorkspaceStream(ws), 1, 1<<30)
	if err != nil {
		return service.CommitResult{}, false
	}
	for _, r := range recs {
		ev, err := domain.Decode(r.Type, r.Data)
		if c, ok := ev.(domain.Committed); err == nil && ok && c.RequestID == requestID {
			return service.CommitResult{EventID: r.ID, Event: c, Position: r.Position}, true
		}
	}
	return service.CommitResult{}, false
}

// AccountInfo implements rpc.Service.
func (s *Service) AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (protocol.Account, error) {
	c := Call{Method: "AccountInfo"}
	if caller != nil {
		c.User = *caller
	}
	if err := s.enter(ctx, c); err != nil {
		return protocol.Account{}, err
	}
	return s.svc.AccountInfo(ctx, caller, email)
}

// UpdateDevice implements rpc.Service.
func (s *Service) UpdateDevice(ctx context.Context, req protocol.UpdateDeviceRequest) (service.DeviceResult, error) {
	if err := s.enter(ctx, Call{Method: "UpdateDevice", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return service.DeviceResult{}, err
	}
	return s.svc.UpdateDevice(ctx, req)
}

// Workspaces implements rpc.Service.
func (s *Service) Workspaces(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	if err := s.enter(ctx, Call{Method: "Workspaces", User: user}); err != nil {
		return nil, err
	}
	return s.svc.Workspaces(ctx, user)
}

// ChangesStamp implements rpc.Service.
func (s *Service) ChangesStamp(ctx context.Context, user, ws uuid.UUID) (service.ChangesStamp, bool, error) {
	if err := s.enter(ctx, Call{Method: "Changes", User: user}); err != nil {
		return service.ChangesStamp{}, false, err
	}
	return s.svc.ChangesStamp(ctx, user, ws)
}

// EncodedAnswer implements rpc.Service.
func (s *Service) EncodedAnswer(ctx context.Context, user, ws uuid.UUID, base *changeset.Base, enc service.ItemEncoder) (changeset.Answer, error) {
	return s.svc.EncodedAnswer(ctx, user, ws, base, enc)
}

// ChangesSince implements rpc.Service.
func (s *Service) ChangesSince(ctx context.Context, user, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	if err := s.enter(ctx, Call{Method: "ChangesSince", User: user}); err != nil {
		return protocol.ChangesPage{}, err
	}
	return s.svc.ChangesSince(ctx, user, ws, since, limit)
}

// ItemVersions implements rpc.Service.
func (s *Service) ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	if err := s.enter(ctx, Call{Method: "ItemVersions", User: user}); err != nil {
		return nil, err
	}
	return s.svc.ItemVersions(ctx, user, ws, item)
}

// Commit implements rpc.Service.
func (s *Service) Commit(ctx context.Context, req protocol.CommitRequest) (service.CommitResult, error) {
	if err := s.enter(ctx, Call{Method: "Commit", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return service.CommitResult{}, err
	}
	return s.svc.Commit(ctx, req)
}

// UpdateWorkspace implements rpc.Service.
func (s *Service) UpdateWorkspace(ctx context.Context, req protocol.UpdateWorkspaceRequest) error {
	if err := s.enter(ctx, Call{Method: "UpdateWorkspace", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return err
	}
	return s.svc.UpdateWorkspace(ctx, req)
}

// Share is the rpc.Service method.
func (s *Service) Share(ctx context.Context, req service.ShareRequest) (service.ShareResult, error) {
	if err := s.enter(ctx, Call{Method: "Share", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return service.ShareResult{}, err
	}
	return s.svc.Share(ctx, req)
}
