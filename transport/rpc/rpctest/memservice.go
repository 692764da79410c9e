// Package rpctest holds what the transport's tests share: MemService, a small map-backed
// implementation of rpc.Service, and helpers that start a real rpc.Server on a test's
// own RabbitMQ vhost. MemService exists to test the transport: it keeps just enough of
// the commit rules (new items, next versions, wrongVersion, membership, replayed
// requestIds) to give meaningful results. It must never be used by a server process;
// the real service lives in package service.
package rpctest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/service"
)

// Call records one call of MemService.
type Call struct {
	Method    string // the Service method, e.g. "Commit"
	RequestID string // "" for methods whose request carries none
	User      uuid.UUID
}

type memWorkspace struct {
	info     protocol.WorkspaceInfo
	members  map[uuid.UUID]bool
	version  int64
	items    map[domain.ItemID][]domain.ItemMetadata // every version, oldest first
	changed  map[int64][]domain.ItemID               // workspace version → items it changed
	at       map[domain.ItemID][]int64               // item → workspace version of each of its versions
	commits  map[string]service.CommitResult         // by requestId
	byTempID map[string]domain.ItemID                // "<device>/<tempId>" → item
}

// MemService is a map-backed rpc.Service for transport tests.
type MemService struct {
	// Hook, when set, runs at the start of every call; a non-nil error is returned
	// as the call's result. It may block (honouring ctx) or panic.
	Hook func(ctx context.Context, c Call) error

	mu         sync.Mutex
	users      map[uuid.UUID]protocol.Account
	devices    map[uuid.UUID]uuid.UUID // device → user
	registered map[string]uuid.UUID    // updateDevice requestId → device
	workspaces map[uuid.UUID]*memWorkspace
	order      []uuid.UUID // workspaces in creation order
	nextItem   domain.ItemID
	calls      []Call
}

// NewMemService returns an empty service.
func NewMemService() *MemService {
	return &MemService{users: map[uuid.UUID]protocol.Account{}, devices: map[uuid.UUID]uuid.UUID{},
		registered: map[string]uuid.UUID{}, workspaces: map[uuid.UUID]*memWorkspace{}, nextItem: 1}
}

// AddUser creates a user with a personal workspace and returns the workspace's id.
func (s *MemService) AddUser(id uuid.UUID, name, email string) uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = protocol.Account{UserID: id, Name: name, Email: email}
	return s.addWorkspaceLocked(id, name, false)
}

// AddWorkspace creates a shared workspace owned by owner.
func (s *MemService) AddWorkspace(owner uuid.UUID, name string) uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addWorkspaceLocked(owner, name, true)
}

func (s *MemService) addWorkspaceLocked(owner uuid.UUID, name string, shared bool) uuid.UUID {
	id := uuid.New()
	s.workspaces[id] = &memWorkspace{
		info:    protocol.WorkspaceInfo{ID: id, Name: name, OwnerID: owner, IsShared: shared},
		members: map[uuid.UUID]bool{owner: true}, items: map[domain.ItemID][]domain.ItemMetadata{},
		changed: map[int64][]domain.ItemID{}, at: map[domain.ItemID][]int64{},
		commits: map[string]service.CommitResult{}, byTempID: map[string]domain.ItemID{},
	}
	s.order = append(s.order, id)
	return id
}

// AddMember makes user a member of workspace ws.
func (s *MemService) AddMember(ws, user uuid.UUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workspaces[ws].members[user] = true
}

// Calls returns the calls made so far.
func (s *MemService) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CountCalls counts the calls of method with requestID ("" = any).
func (s *MemService) CountCalls(method, requestID string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method && (requestID == "" || c.RequestID == requestID) {
			n++
		}
	}
	return n
}

func (s *MemService) enter(ctx context.Context, c Call) error {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	hook := s.Hook
	s.mu.Unlock()
	if hook != nil {
		return hook(ctx, c)
	}
	return nil
}

// SetHook replaces Hook safely while the server runs.
func (s *MemService) SetHook(h func(ctx context.Context, c Call) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Hook = h
}

// member returns ws if user is a member of it.
func (s *MemService) member(user, ws uuid.UUID) (*memWorkspace, error) {
	w, ok := s.workspaces[ws]
	if !ok {
		return nil, fmt.Errorf("workspace %s: %w", ws, protocol.ErrWorkspaceNotFound)
	}
	if !w.members[user] {
		return nil, fmt.Errorf("workspace %s user %s: %w", ws, user, protocol.ErrUnauthorized)
	}
	return w, nil
}

// AccountInfo implements rpc.Service.
func (s *MemService) AccountInfo(ctx context.Context, caller *uuid.UUID, email string) (protocol.Account, error) {
	c := Call{Method: "AccountInfo"}
	if caller != nil {
		c.User = *caller
	}
	if err := s.enter(ctx, c); err != nil {
		return protocol.Account{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.users {
		if a.Email == email && (caller == nil || *caller == a.UserID) {
			for _, w := range s.workspaces {
				if w.info.OwnerID == a.UserID {
					a.QuotaUsed += w.used()
				}
			}
			return a, nil
		}
	}
	return protocol.Account{}, fmt.Errorf("account %q: %w", email, protocol.ErrUserNotFound)
}

func (w *memWorkspace) used() int64 {
	var n int64
	for _, vs := range w.items {
		n += vs[len(vs)-1].Size
	}
	return n
}

// UpdateDevice implements rpc.Service.
func (s *MemService) UpdateDevice(ctx context.Context, req protocol.UpdateDeviceRequest) (service.DeviceResult, error) {
	if err := s.enter(ctx, Call{Method: "UpdateDevice", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return service.DeviceResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[req.UserID]; !ok {
		return service.DeviceResult{}, fmt.Errorf("user %s: %w", req.UserID, protocol.ErrUserNotFound)
	}
	if req.DeviceID != nil {
		if s.devices[*req.DeviceID] != req.UserID {
			return service.DeviceResult{}, fmt.Errorf("device %s: %w", *req.DeviceID, protocol.ErrDeviceNotValid)
		}
		return service.DeviceResult{ID: *req.DeviceID}, nil
	}
	key := req.UserID.String() + "/" + req.RequestID
	if id, ok := s.registered[key]; ok {
		return service.DeviceResult{ID: id}, nil
	}
	id := uuid.New()
	s.devices[id] = req.UserID
	s.registered[key] = id
	return service.DeviceResult{ID: id}, nil
}

// Workspaces implements rpc.Service: the personal workspace first.
func (s *MemService) Workspaces(ctx context.Context, user uuid.UUID) ([]protocol.WorkspaceInfo, error) {
	if err := s.enter(ctx, Call{Method: "Workspaces", User: user}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.WorkspaceInfo
	for _, id := range s.order {
		w := s.workspaces[id]
		if w.members[user] {
			info := w.info
			info.LatestRevision = w.version
			out = append(out, info)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("user %s: %w", user, protocol.ErrNoWorkspaces)
	}
	return out, nil
}

// Changes implements rpc.Service.
func (s *MemService) Changes(ctx context.Context, user, ws uuid.UUID) ([]domain.ItemMetadata, error) {
	if err := s.enter(ctx, Call{Method: "Changes", User: user}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.member(user, ws)
	if err != nil {
		return nil, err
	}
	return w.latest(w.version, nil), nil
}

// latest returns the state as of version upTo of the items in ids (all when nil), in
// id order (parents are always created before their children here).
func (w *memWorkspace) latest(upTo int64, ids map[domain.ItemID]bool) []domain.ItemMetadata {
	var out []domain.ItemMetadata
	for id, vs := range w.items {
		if ids != nil && !ids[id] {
			continue
		}
		for i := len(vs) - 1; i >= 0; i-- {
			if w.at[id][i] <= upTo {
				out = append(out, vs[i].Clone())
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b domain.ItemMetadata) int { return int(*a.ID - *b.ID) })
	return out
}

// ChangesSince implements rpc.Service.
func (s *MemService) ChangesSince(ctx context.Context, user, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	if err := s.enter(ctx, Call{Method: "ChangesSince", User: user}); err != nil {
		return protocol.ChangesPage{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.member(user, ws)
	if err != nil {
		return protocol.ChangesPage{}, err
	}
	ids := map[domain.ItemID]bool{}
	to := since
	for v := since + 1; v <= w.version; v++ {
		next := len(ids)
		for _, id := range w.changed[v] {
			if !ids[id] {
				next++
			}
		}
		if to > since && next > limit {
			break
		}
		for _, id := range w.changed[v] {
			ids[id] = true
		}
		to = v
	}
	if to < since {
		to = since
	}
	items := w.latest(to, ids)
	if items == nil {
		items = []domain.ItemMetadata{}
	}
	return protocol.ChangesPage{Items: items, FromVersion: since, ToVersion: to, HasMore: to < w.version, WorkspaceVersion: w.version}, nil
}

// ItemVersions implements rpc.Service.
func (s *MemService) ItemVersions(ctx context.Context, user, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	if err := s.enter(ctx, Call{Method: "ItemVersions", User: user}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.member(user, ws)
	if err != nil {
		return nil, err
	}
	out := []domain.ItemMetadata{}
	for _, m := range w.items[item] {
		out = append(out, m.Clone())
	}
	return out, nil
}

// Commit implements rpc.Service with the core of PROTOCOL.md §5: new items at version
// 1, the next version of a known item, wrongVersion otherwise; one event per fresh
// requestId; a repeated requestId is replayed.
func (s *MemService) Commit(ctx context.Context, req protocol.CommitRequest) (service.CommitResult, error) {
	if err := s.enter(ctx, Call{Method: "Commit", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return service.CommitResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.member(req.UserID, req.WorkspaceID)
	if err != nil {
		return service.CommitResult{}, err
	}
	if s.devices[req.DeviceID] != req.UserID {
		return service.CommitResult{}, fmt.Errorf("device %s: %w", req.DeviceID, protocol.ErrUnauthorized)
	}
	if res, ok := w.commits[req.RequestID]; ok {
		res.Replayed = true
		return res, nil
	}
	w.version++
	ev := domain.Committed{WorkspaceID: req.WorkspaceID, WorkspaceVersion: w.version, RequestID: req.RequestID,
		UserID: req.UserID, DeviceID: req.DeviceID, CommittedAt: time.Now().UTC()}
	for _, it := range req.Items {
		it = it.Clone()
		it.DeviceID, it.WorkspaceID = req.DeviceID, req.WorkspaceID
		out := domain.ItemOutcome{CommittedVersion: it.Version}
		if it.ID == nil && it.TempID != nil {
			if id, ok := w.byTempID[fmt.Sprintf("%s/%d", req.DeviceID, *it.TempID)]; ok {
				it.ID = &id
			}
		}
		switch {
		case it.ID == nil && it.Version == 1:
			id := s.nextItem
			s.nextItem++
			it.ID = &id
			if it.TempID != nil {
				w.byTempID[fmt.Sprintf("%s/%d", req.DeviceID, *it.TempID)] = id
			}
			w.store(it, w.version)
			out.Succeeded, out.Stored, out.Metadata = true, true, ptr(it.Clone())
		case it.ID == nil:
			out.Reason = domain.ReasonWrongVersion
		case len(w.items[*it.ID]) == 0:
			out.Reason = domain.ReasonInvalidItem
		default:
			vs := w.items[*it.ID]
			cur := vs[len(vs)-1]
			if it.Version == cur.Version+1 {
				w.store(it, w.version)
				out.Succeeded, out.Stored, out.Metadata = true, true, ptr(it.Clone())
			} else {
				out.Reason, out.Metadata = domain.ReasonWrongVersion, ptr(cur.Clone())
			}
		}
		ev.Items = append(ev.Items, out)
	}
	ev.UsedQuota = w.used()
	res := service.CommitResult{EventID: uuid.New(), Event: ev}
	w.commits[req.RequestID] = res
	return res, nil
}

func (w *memWorkspace) store(m domain.ItemMetadata, at int64) {
	w.items[*m.ID] = append(w.items[*m.ID], m)
	w.at[*m.ID] = append(w.at[*m.ID], at)
	w.changed[at] = append(w.changed[at], *m.ID)
}

// UpdateWorkspace implements rpc.Service.
func (s *MemService) UpdateWorkspace(ctx context.Context, req protocol.UpdateWorkspaceRequest) error {
	if err := s.enter(ctx, Call{Method: "UpdateWorkspace", RequestID: req.RequestID, User: req.UserID}); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.member(req.UserID, req.WorkspaceID)
	if err != nil {
		return err
	}
	if w.info.OwnerID == req.UserID {
		w.info.Name = req.Name
		w.info.ParentItemID = req.ParentItemID
	}
	return nil
}

// WorkspaceVersion returns the current version of ws.
func (s *MemService) WorkspaceVersion(ws uuid.UUID) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workspaces[ws].version
}

// CommitResultOf returns the recorded result of requestID in ws.
func (s *MemService) CommitResultOf(ws uuid.UUID, requestID string) (service.CommitResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.workspaces[ws].commits[requestID]
	return r, ok
}

func ptr[T any](v T) *T { return &v }
