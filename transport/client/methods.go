package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// UserID returns the client's user.
func (c *Client) UserID() uuid.UUID { return c.cfg.UserID }

// DeviceID returns the device of the last successful UpdateDevice (uuid.Nil before).
func (c *Client) DeviceID() uuid.UUID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.device
}

// GetAccountInfo returns the account with e-mail email (the caller's own, unless the
// server runs in trust mode).
func (c *Client) GetAccountInfo(ctx context.Context, email string) (protocol.Account, error) {
	var r wire.AccountInfo
	err := c.call(ctx, wire.MethodGetAccountInfo, map[string]any{"requestId": uuid.NewString(), "email": email}, &r)
	if err != nil {
		return protocol.Account{}, err
	}
	id, err := uuid.Parse(r.UserID)
	if err != nil {
		return protocol.Account{}, fmt.Errorf("getAccountInfo: userId %q: %w", r.UserID, err)
	}
	return protocol.Account{UserID: id, Name: r.Name, Email: r.Email, QuotaLimit: r.QuotaLimit, QuotaUsed: r.QuotaUsed}, nil
}

// UpdateDevice registers the device (device nil) or updates it, and remembers its id.
// The server (re)declares the device's event queue before it answers. A retried
// registration re-sends the same requestId, so it never makes two devices.
func (c *Client) UpdateDevice(ctx context.Context, device *uuid.UUID) (uuid.UUID, error) {
	params := struct {
		RequestID  string     `json:"requestId"`
		UserID     string     `json:"userId"`
		DeviceID   *uuid.UUID `json:"deviceId"`
		DeviceName string     `json:"deviceName"`
		OS         string     `json:"os"`
		IP         *string    `json:"ip"`
		AppVersion *string    `json:"appVersion"`
	}{RequestID: uuid.NewString(), UserID: c.cfg.UserID.String(), DeviceID: device, DeviceName: c.cfg.DeviceName, OS: c.cfg.OS}
	if c.cfg.AppVersion != "" {
		params.AppVersion = &c.cfg.AppVersion
	}
	var id string
	if err := c.call(ctx, wire.MethodUpdateDevice, params, &id); err != nil {
		return uuid.Nil, err
	}
	dev, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("updateDevice: result %q: %w", id, err)
	}
	c.mu.Lock()
	c.device = dev
	c.mu.Unlock()
	return dev, nil
}

// GetWorkspaces returns the user's workspaces, the personal one first.
func (c *Client) GetWorkspaces(ctx context.Context) ([]protocol.WorkspaceInfo, error) {
	var r []wire.Workspace
	if err := c.call(ctx, wire.MethodGetWorkspaces, c.common(), &r); err != nil {
		return nil, err
	}
	out := make([]protocol.WorkspaceInfo, len(r))
	for i, w := range r {
		id, err1 := uuid.Parse(w.ID)
		owner, err2 := uuid.Parse(w.Owner.ID)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("getWorkspaces: workspace %d: %w", i, err)
		}
		out[i] = protocol.WorkspaceInfo{ID: id, Name: w.Name, OwnerID: owner, IsShared: w.IsShared,
			IsEncrypted: w.IsEncrypted, LatestRevision: w.LatestRevision}
		if w.ParentItem != nil {
			p := domain.ItemID(w.ParentItem.ID)
			out[i].ParentItemID = &p
		}
	}
	return out, nil
}

// GetChanges returns the latest version of every item of ws.
func (c *Client) GetChanges(ctx context.Context, ws uuid.UUID) ([]domain.ItemMetadata, error) {
	return c.callItems(ctx, wire.MethodGetChanges, c.workspace(ws))
}

// callItems calls a method whose result is a list of item versions.
func (c *Client) callItems(ctx context.Context, method string, params any) ([]domain.ItemMetadata, error) {
	var items []domain.ItemMetadata
	err := c.callDecode(ctx, method, params, func(body []byte) (answer *wire.Error, err error) {
		items, answer, err = wire.ParseItemsReply(body)
		return answer, err
	})
	return items, err
}

// GetChangesSince returns one page of the changes of ws after version since; limit 0
// uses the server's default.
func (c *Client) GetChangesSince(ctx context.Context, ws uuid.UUID, since int64, limit int) (protocol.ChangesPage, error) {
	p := c.workspace(ws)
	p["sinceVersion"] = since
	if limit > 0 {
		p["limit"] = limit
	}
	var r struct {
		wire.ChangesPage
		Items json.RawMessage `json:"items"` // decoded by wire.ParseItems
	}
	if err := c.call(ctx, wire.MethodGetChangesSince, p, &r); err != nil {
		return protocol.ChangesPage{}, err
	}
	items := []domain.ItemMetadata{}
	if len(r.Items) > 0 {
		var err error
		if items, err = wire.ParseItems(r.Items); err != nil {
			return protocol.ChangesPage{}, fmt.Errorf("%s: %w", wire.MethodGetChangesSince, err)
		}
	}
	moved, err := wire.ToMovedOut(r.MovedOut)
	if err != nil {
		return protocol.ChangesPage{}, fmt.Errorf("%s: %w", wire.MethodGetChangesSince, err)
	}
	return protocol.ChangesPage{Items: items, FromVersion: r.FromVersion, ToVersion: r.ToVersion, HasMore: r.HasMore,
		WorkspaceVersion: r.WorkspaceVersion, MovedOut: moved}, nil
}

// GetItemVersions returns every version of item in ws, oldest first.
func (c *Client) GetItemVersions(ctx context.Context, ws uuid.UUID, item domain.ItemID) ([]domain.ItemMetadata, error) {
	p := c.workspace(ws)
	p["itemId"] = item
	return c.callItems(ctx, wire.MethodGetItemVersions, p)
}

// UpdateWorkspace sets the user's own name and mount point (nil = root) of ws.
func (c *Client) UpdateWorkspace(ctx context.Context, ws uuid.UUID, name string, parent *domain.ItemID) error {
	p := c.workspace(ws)
	p["workspaceName"] = name
	p["parentItemId"] = parent
	return c.call(ctx, wire.MethodUpdateWorkspace, p, nil)
}

// CommitRequest is a commit to send.
type CommitRequest struct {
	// RequestID identifies the commit; re-sending it never applies it twice. Default: a
	// new UUID (set in the request after the call).
	RequestID   string
	WorkspaceID uuid.UUID
	// DeviceID defaults to the device of the last UpdateDevice.
	DeviceID uuid.UUID
	Items    []domain.ItemMetadata
}

func (c *Client) commitBody(req *CommitRequest, corr string) ([]byte, error) {
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	if req.DeviceID == uuid.Nil {
		req.DeviceID = c.DeviceID()
	}
	if req.DeviceID == uuid.Nil {
		return nil, errors.New("commit: no device: call UpdateDevice first or set DeviceID")
	}
	return wire.AppendCommitRequest(nil, corr, req.RequestID, c.cfg.UserID, req.WorkspaceID, req.DeviceID, req.Items), nil
}

// Commit publishes a commit request and returns once the broker has taken it. Its
// outcome arrives as a notifyCommit event (see Subscribe); use CommitAndWait to wait
// for it.
func (c *Client) Commit(ctx context.Context, req *CommitRequest) error {
	corr := uuid.NewString()
	body, err := c.commitBody(req, corr)
	if err != nil {
		return err
	}
	return c.send(ctx, "commit", req.RequestID, corr, body)
}

// send publishes an asynchronous request's body (what and requestID name it in errors)
// and returns once the broker has taken it.
func (c *Client) send(ctx context.Context, what, requestID, corr string, body []byte) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	s, err := c.current(actx)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, requestID, err)
	}
	if err := c.publish(actx, s, corr, body, true); err != nil {
		return fmt.Errorf("%s %s: %w", what, requestID, err)
	}
	return nil
}

// CommitAndWait commits and waits for the commit's own notification (matched by
// requestId) on the device's event queue, which requires Subscribe. After a timeout
// it re-sends the same request; the server answers a repeated requestId by publishing
// the original notification again. An error answer of the whole request (unknown
// workspace, unauthorized, Busy after the retries) is returned as an *Error.
func (c *Client) CommitAndWait(ctx context.Context, req *CommitRequest) (wire.CommitNotification, error) {
	if !c.ev.subscribed() {
		return wire.CommitNotification{}, errors.New("commit: CommitAndWait needs Subscribe")
	}
	corr := uuid.NewString()
	body, err := c.commitBody(req, corr)
	if err != nil {
		return wire.CommitNotification{}, err
	}
	return c.sendAndWait(ctx, wire.MethodCommit, req.RequestID, corr, body)
}

// sendAndWait publishes body (an async request of method, correlation id corr) and
// waits for the first notifyCommit carrying requestID on the device's event queue,
// re-sending the same body after each timeout or Busy answer. Another error answer
// is returned as an *Error.
func (c *Client) sendAndWait(ctx context.Context, method, requestID, corr string, body []byte) (wire.CommitNotification, error) {
	note := c.ev.await(requestID)
	defer c.ev.forget(requestID)
	replies := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[corr] = replies
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, corr)
		c.mu.Unlock()
	}()
	last := error(ErrTimeout)
	for attempt := 0; attempt <= c.cfg.Retries; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		s, err := c.current(actx)
		if err == nil {
			err = c.publish(actx, s, corr, body, true)
		}
		if err == nil {
		wait:
			for {
				select {
				case n := <-note:
					cancel()
					return n, nil
				case body := <-replies:
					r, err := wire.ParseReply(body)
					if err != nil {
						c.log.Warn("undecodable reply", "method", method, "correlation_id", corr, "err", err)
						continue
					}
					if r.Error == nil {
						continue // a void reply (async=false style); the event decides
					}
					e := &Error{Method: method, Code: r.Error.Type, Message: r.Error.Message}
					if e.Code != wire.CodeBusy {
						cancel()
						return wire.CommitNotification{}, e
					}
					if r.Error.RetryAfterMs != nil {
						e.RetryAfter = time.Duration(*r.Error.RetryAfterMs) * time.Millisecond
					}
					last = e
					select {
					case <-time.After(e.RetryAfter):
					case <-actx.Done():
					}
					break wait
				case <-actx.Done():
					break wait
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return wire.CommitNotification{}, fmt.Errorf("%s %s: %w", method, requestID, ctx.Err())
		}
		if c.ctx.Err() != nil {
			return wire.CommitNotification{}, fmt.Errorf("%s %s: %w", method, requestID, ErrClosed)
		}
		if err != nil {
			last = fmt.Errorf("%w: %v", ErrTimeout, err)
		}
	}
	return wire.CommitNotification{}, fmt.Errorf("%s %s after %d attempts: %w", method, requestID, c.cfg.Retries+1, last)
}

func (c *Client) common() map[string]any {
	return map[string]any{"requestId": uuid.NewString(), "userId": c.cfg.UserID.String()}
}

func (c *Client) workspace(ws uuid.UUID) map[string]any {
	p := c.common()
	p["workspaceId"] = ws.String()
	return p
}
