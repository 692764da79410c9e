package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// ShareRequest is a createShareProposal to send (PROTOCOL.md §8): share folder ItemID
// of the caller's personal workspace with the users of Emails.
type ShareRequest struct {
	// RequestID identifies the share; re-sending it creates nothing new (the shared
	// workspace's id derives from it). Default: a new UUID (set in the request).
	RequestID   string
	ItemID      domain.ItemID
	Emails      []string
	IsEncrypted bool
}

func (c *Client) shareBody(req *ShareRequest, corr string) ([]byte, error) {
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	emails := req.Emails
	if emails == nil {
		emails = []string{}
	}
	p := c.common()
	p["requestId"] = req.RequestID
	p["itemId"] = int64(req.ItemID)
	p["emails"] = emails
	p["isEncrypted"] = req.IsEncrypted
	body, err := json.Marshal(map[string]any{"method": wire.MethodCreateShareProposal, "params": []any{p}, "id": corr, "async": true})
	if err != nil {
		return nil, fmt.Errorf("share %s: encode: %w", req.RequestID, err)
	}
	return body, nil
}

// Share publishes a createShareProposal and returns once the broker has taken it. Its
// outcome arrives as events (see Subscribe and SubscribeOptions.UserEvents); an error
// of the whole request is answered on the reply queue, which only ShareAndWait reads.
func (c *Client) Share(ctx context.Context, req *ShareRequest) error {
	corr := uuid.NewString()
	body, err := c.shareBody(req, corr)
	if err != nil {
		return err
	}
	return c.send(ctx, "share", req.RequestID, corr, body)
}

// ShareAndWait shares and waits for the first notifyCommit of the share (movedOut on
// the personal workspace or movedIn on the shared one; both carry the requestId),
// which requires Subscribe. After a timeout it re-sends the same request: the server
// answers a repeated requestId by publishing the movedOut notification again. An error
// answer (Unauthorized, InvalidRequest, UserNotFoundException) is returned as an
// *Error. A share of a folder that is shared already only adds members and publishes
// no notifyCommit: use Share for that, and watch for the members' proposals.
func (c *Client) ShareAndWait(ctx context.Context, req *ShareRequest) (wire.CommitNotification, error) {
	if !c.ev.subscribed() {
		return wire.CommitNotification{}, errors.New("share: ShareAndWait needs Subscribe")
	}
	corr := uuid.NewString()
	body, err := c.shareBody(req, corr)
	if err != nil {
		return wire.CommitNotification{}, err
	}
	return c.sendAndWait(ctx, wire.MethodCreateShareProposal, req.RequestID, corr, body)
}

// UserEvent is an event of the user's exchange (PROTOCOL.md §8): exactly one of its
// pointers is set, after Method.
type UserEvent struct {
	Method          string
	ShareProposal   *wire.ShareProposal
	UpdateWorkspace *wire.WorkspaceUpdate
	Unshare         *wire.Unshare
}

// userEvent decodes the user events of §8; ok false for any other method.
func userEvent(method string, params []json.RawMessage) (UserEvent, bool, error) {
	u := UserEvent{Method: method}
	var target any
	switch method {
	case wire.MethodNotifyShareProposal:
		u.ShareProposal = &wire.ShareProposal{}
		target = u.ShareProposal
	case wire.MethodNotifyUpdateWorkspace:
		u.UpdateWorkspace = &wire.WorkspaceUpdate{}
		target = u.UpdateWorkspace
	case wire.MethodNotifyUnshare:
		u.Unshare = &wire.Unshare{}
		target = u.Unshare
	default:
		return UserEvent{}, false, nil
	}
	if len(params) != 1 {
		return UserEvent{}, true, fmt.Errorf("%s with %d params", method, len(params))
	}
	if err := json.Unmarshal(params[0], target); err != nil {
		return UserEvent{}, true, fmt.Errorf("%s: %w", method, err)
	}
	return u, true, nil
}

// handleUserEvent delivers a user event. After notifyUnshare the workspace is no longer
// followed (its version forgotten): the device's queue is unbound from it.
func (e *events) handleUserEvent(c *Client, u UserEvent) {
	if u.Unshare != nil {
		if ws, err := uuid.Parse(u.Unshare.WorkspaceID); err == nil {
			e.forgetVersion(ws)
		}
	}
	e.mu.Lock()
	h := e.onUser
	e.mu.Unlock()
	if h != nil {
		h(u)
	} else {
		c.log.Debug("user event without a handler", "method", u.Method)
	}
}
