package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/stages"
)

// mapDomainErr turns a domain decision error into the service error the wire knows.
func mapDomainErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, domain.ErrInvalidCommand), errors.Is(err, domain.ErrItemNotInHistory):
		return fmt.Errorf("%w: %w", protocol.ErrInvalid, err)
	case errors.Is(err, domain.ErrNotMember):
		return fmt.Errorf("%w: %w", protocol.ErrUnauthorized, err)
	case errors.Is(err, domain.ErrDeviceNotValid):
		return fmt.Errorf("%w: %w", protocol.ErrDeviceNotValid, err)
	case errors.Is(err, domain.ErrUserRemoved):
		return fmt.Errorf("%w: %w", protocol.ErrUserNotFound, err)
	}
	return err
}

// Commit decides a commit request and appends its one Committed event (PROTOCOL.md §5).
// A request repeating a processed requestId returns the original event, Replayed.
// Commits to one workspace that wait for each other in this process are decided one
// after another and appended together (commitqueue.go, commitbatch.go).
func (s *Service) Commit(ctx context.Context, req protocol.CommitRequest) (CommitResult, error) {
	// A cached state may lag a registration made through another process: only a
	// positive answer is taken from the cache, a negative one is checked on the stream.
	var user *domain.User
	for _, fresh := range []bool{false, true} {
		var err error
		if user, err = s.loadUserView(ctx, req.UserID, fresh); err != nil { // read only, down to quotaOf
			return CommitResult{}, err
		}
		if _, ok := user.Device(req.DeviceID); ok && user.Exists() && !user.Removed() {
			break
		}
		if fresh {
			if !user.Exists() || user.Removed() {
				return CommitResult{}, fmt.Errorf("%w: user %s", protocol.ErrUnauthorized, req.UserID)
			}
			return CommitResult{}, fmt.Errorf("%w: device %s is not registered to user %s", protocol.ErrUnauthorized, req.DeviceID, req.UserID)
		}
	}
	// Refused before any id is reserved; the domain checks the same bounds (an empty
	// commit is left to it: a repeated requestId with no items is a replay, §5).
	if n := len(req.Items); n > s.cfg.Limits.MaxCommitItems {
		return CommitResult{}, fmt.Errorf("%w: commit %q has %d items, the limit is 1 to %d per commit",
			protocol.ErrInvalid, req.RequestID, n, s.cfg.Limits.MaxCommitItems)
	}
	newItems := 0
	for _, it := range req.Items {
		if it.ID == nil {
			newItems++
		}
	}
	ids, err := s.ids.Take(ctx, newItems)
	if err != nil {
		return CommitResult{}, err
	}
	stages.Mark(ctx, stages.Queued)
	out, err := s.commitQueued(&queuedCommit{ctx: ctx, req: req, user: user, ids: ids, done: make(chan commitAnswer, 1)})
	if err != nil {
		return CommitResult{}, err
	}
	c, ok := out.event.(domain.Committed)
	if !ok {
		return CommitResult{}, fmt.Errorf("%w: requestId %q was used by a %s in workspace %s", protocol.ErrInvalid, req.RequestID, out.event.EventType(), req.WorkspaceID)
	}
	return CommitResult{EventID: out.eventID, Event: c, Position: out.position, Replayed: out.replayed}, nil
}

// commitKey is the request key of a commit's event id.
func commitKey(requestID string) string { return "commit:" + requestID }

// UpdateDevice registers a device (DeviceID nil) or updates one of the user's devices,
// and returns its id. Registering again with the same requestId returns the same id.
func (s *Service) UpdateDevice(ctx context.Context, req protocol.UpdateDeviceRequest) (DeviceResult, error) {
	fresh := uuid.New()
	// The event id's key has the scope in which the domain recognises a repeated request:
	// registrations per user by requestId; updates (not deduplicated by the domain) per
	// device, so a retried update is recognised by the store and another device's update
	// that reuses the requestId is not mistaken for it.
	key := "device:" + req.RequestID
	if req.DeviceID != nil {
		key = "device-update:" + req.DeviceID.String() + "\x00" + req.RequestID
	}
	out, err := execute(ctx, s, s.users, req.UserID, domain.UserStream(req.UserID), key,
		func(u *domain.User, prev string) (domain.Decision, error) {
			if !u.Exists() || u.Removed() {
				return domain.Decision{}, fmt.Errorf("%w: %s", protocol.ErrUserNotFound, req.UserID)
			}
			now := s.cfg.Now().UTC()
			var d domain.Decision
			var err error
			if req.DeviceID == nil {
				d, err = u.Decide(domain.RegisterDevice{RequestID: req.RequestID, UserID: req.UserID, DeviceID: fresh,
					Name: req.Name, OS: req.OS, IP: req.IP, AppVersion: req.AppVersion, Limits: s.cfg.Limits, At: now, PrevHash: prev})
			} else {
				d, err = u.Decide(domain.UpdateDevice{RequestID: req.RequestID, UserID: req.UserID, DeviceID: *req.DeviceID,
					Name: req.Name, OS: req.OS, IP: req.IP, AppVersion: req.AppVersion, At: now, PrevHash: prev})
			}
			return d, mapDomainErr(err)
		})
	if err != nil {
		return DeviceResult{}, err
	}
	switch ev := out.event.(type) {
	case domain.DeviceRegistered:
		return DeviceResult{ID: ev.DeviceID, Position: out.position}, nil
	case domain.DeviceUpdated:
		return DeviceResult{ID: ev.DeviceID, Position: out.position}, nil
	}
	return DeviceResult{}, fmt.Errorf("%w: requestId %q was used by a %s", protocol.ErrInvalid, req.RequestID, out.event.EventType())
}

// RemoveDevice unregisters one of a user's devices (syncctl device remove), freeing a
// slot under Limits.MaxDevicesPerUser. The device's later requests are refused as those
// of an unknown device. The returned position is that of the DeviceRemoved event.
func (s *Service) RemoveDevice(ctx context.Context, user, device uuid.UUID) (eventstore.Position, error) {
	out, err := execute(ctx, s, s.users, user, domain.UserStream(user), "",
		func(u *domain.User, prev string) (domain.Decision, error) {
			d, err := u.Decide(domain.RemoveDevice{UserID: user, DeviceID: device, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapUserErr(user, err)
		})
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("remove device %s of %s: %w", device, user, err)
	}
	return out.position, nil
}

// UpdateWorkspace sets the caller's own name and mount point for a workspace. A mount
// point that would nest shared workspaces is refused (checkMount).
func (s *Service) UpdateWorkspace(ctx context.Context, req protocol.UpdateWorkspaceRequest) error {
	if req.ParentItemID != nil && *req.ParentItemID > 0 {
		if err := s.checkMount(ctx, req.UserID, req.WorkspaceID, *req.ParentItemID); err != nil {
			return fmt.Errorf("update workspace %s: %w", req.WorkspaceID, err)
		}
	}
	_, err := execute(ctx, s, s.workspaces, req.WorkspaceID, domain.WorkspaceStream(req.WorkspaceID),
		"member:"+req.UserID.String()+"\x00"+req.RequestID, // per member, as the domain deduplicates
		func(w *domain.Workspace, prev string) (domain.Decision, error) {
			if !w.Exists() {
				return domain.Decision{}, fmt.Errorf("%w: %s", protocol.ErrWorkspaceNotFound, req.WorkspaceID)
			}
			d, err := w.Decide(domain.UpdateMemberWorkspace{RequestID: req.RequestID, WorkspaceID: req.WorkspaceID,
				UserID: req.UserID, Name: req.Name, ParentItemID: req.ParentItemID, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapDomainErr(err)
		})
	return err
}

// --- administration (syncctl) ---

// NewUser describes a user to create.
type NewUser struct {
	Name       string
	Email      string
	QuotaLimit int64 // bytes, 0 = no limit
}

// CreateUser creates a user and their personal workspace, and returns both ids. The
// e-mail must not belong to another user.
func (s *Service) CreateUser(ctx context.Context, nu NewUser) (user, personal uuid.UUID, err error) {
	email := strings.ToLower(strings.TrimSpace(nu.Email))
	// Checked before the e-mail is looked up (PostgreSQL refuses NUL); the name also
	// names the personal workspace, so it must be a valid workspace name.
	if err := domain.CheckText("email", email, domain.MaxEmailBytes); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("%w: create user: %w", protocol.ErrInvalid, err)
	}
	if !domain.ValidName(nu.Name) {
		return uuid.Nil, uuid.Nil, fmt.Errorf("%w: create user: name must be 1 to %d bytes of UTF-8 without '/' or NUL (it names the personal workspace)",
			protocol.ErrInvalid, domain.MaxNameBytes)
	}
	if taken, err := read(ctx, s.reads, func(ctx context.Context) (bool, error) {
		_, taken, err := s.reads.AccountByEmail(ctx, email)
		return taken, err
	}); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("create user: %w", err)
	} else if taken {
		return uuid.Nil, uuid.Nil, fmt.Errorf("%w: e-mail %s is taken", protocol.ErrInvalid, email)
	}
	user = uuid.New()
	if _, err := execute(ctx, s, s.users, user, domain.UserStream(user), "create",
		func(u *domain.User, prev string) (domain.Decision, error) {
			d, err := u.Decide(domain.CreateUser{UserID: user, Name: nu.Name, Email: email, QuotaLimit: nu.QuotaLimit,
				At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapDomainErr(err)
		}); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("create user: %w", err)
	}
	personal, err = s.CreateWorkspace(ctx, user, nu.Name, false)
	if err != nil {
		return user, uuid.Nil, fmt.Errorf("create personal workspace of %s: %w", user, err)
	}
	return user, personal, nil
}

// SetQuota changes a user's quota limit (0 = none).
func (s *Service) SetQuota(ctx context.Context, user uuid.UUID, limit int64) error {
	_, err := execute(ctx, s, s.users, user, domain.UserStream(user), "",
		func(u *domain.User, prev string) (domain.Decision, error) {
			d, err := u.Decide(domain.SetQuota{UserID: user, QuotaLimit: limit, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapUserErr(user, err)
		})
	return err
}

// RemoveUser closes a user's account.
func (s *Service) RemoveUser(ctx context.Context, user uuid.UUID) error {
	_, err := execute(ctx, s, s.users, user, domain.UserStream(user), "remove",
		func(u *domain.User, prev string) (domain.Decision, error) {
			d, err := u.Decide(domain.RemoveUser{UserID: user, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapUserErr(user, err)
		})
	return err
}

func mapUserErr(user uuid.UUID, err error) error {
	if errors.Is(err, domain.ErrNotFound) {
		return fmt.Errorf("%w: %s", protocol.ErrUserNotFound, user)
	}
	return mapDomainErr(err)
}

// CreateWorkspace creates a workspace owned by owner (its first member).
func (s *Service) CreateWorkspace(ctx context.Context, owner uuid.UUID, name string, shared bool) (uuid.UUID, error) {
	if err := s.requireUser(ctx, owner); err != nil {
		return uuid.Nil, err
	}
	ws := uuid.New()
	_, err := execute(ctx, s, s.workspaces, ws, domain.WorkspaceStream(ws), "create",
		func(w *domain.Workspace, prev string) (domain.Decision, error) {
			d, err := w.Decide(domain.CreateWorkspace{WorkspaceID: ws, Name: name, OwnerID: owner, IsShared: shared,
				At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapDomainErr(err)
		})
	if err != nil {
		return uuid.Nil, fmt.Errorf("create workspace: %w", err)
	}
	return ws, nil
}

// AddMember makes user a member of ws, naming it name in the member's tree.
func (s *Service) AddMember(ctx context.Context, ws, user uuid.UUID, name string) error {
	if err := s.requireUser(ctx, user); err != nil {
		return err
	}
	_, err := execute(ctx, s, s.workspaces, ws, domain.WorkspaceStream(ws), "",
		func(w *domain.Workspace, prev string) (domain.Decision, error) {
			if !w.Exists() {
				return domain.Decision{}, fmt.Errorf("%w: %s", protocol.ErrWorkspaceNotFound, ws)
			}
			d, err := w.Decide(domain.AddMember{WorkspaceID: ws, UserID: user, Name: name, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapDomainErr(err)
		})
	return err
}

// RemoveMember ends user's membership of ws.
func (s *Service) RemoveMember(ctx context.Context, ws, user uuid.UUID) error {
	_, err := execute(ctx, s, s.workspaces, ws, domain.WorkspaceStream(ws), "",
		func(w *domain.Workspace, prev string) (domain.Decision, error) {
			if !w.Exists() {
				return domain.Decision{}, fmt.Errorf("%w: %s", protocol.ErrWorkspaceNotFound, ws)
			}
			d, err := w.Decide(domain.RemoveMember{WorkspaceID: ws, UserID: user, At: s.cfg.Now().UTC(), PrevHash: prev})
			return d, mapDomainErr(err)
		})
	return err
}

func (s *Service) requireUser(ctx context.Context, id uuid.UUID) error {
	u, err := s.loadUser(ctx, id, true)
	if err != nil {
		return err
	}
	if !u.Exists() || u.Removed() {
		return fmt.Errorf("%w: %s", protocol.ErrUserNotFound, id)
	}
	return nil
}
