// Package rabbitadmin manages the broker accounts of sync users through the RabbitMQ
// management HTTP API: one account per user, named by the user's id, with exactly the
// permissions of PROTOCOL.md §6, so that a user can publish requests and read only
// their own reply and event queues.
package rabbitadmin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Client talks to one broker's management API for one vhost.
type Client struct {
	base  *url.URL // without credentials
	user  string
	pass  string
	vhost string
	http  *http.Client
}

// New returns a client for apiURL (e.g. http://admin:secret@127.0.0.1:15672, whose
// credentials must have the administrator tag) managing accounts on vhost.
func New(apiURL, vhost string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("rabbitmq api url %q: not a URL", apiURL)
	}
	c := &Client{base: u, vhost: vhost, http: &http.Client{Timeout: 15 * time.Second}}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		cp := *u
		cp.User = nil
		c.base = &cp
	}
	if c.vhost == "" {
		c.vhost = "/"
	}
	return c, nil
}

// Permissions are a user's configure, write and read patterns on a vhost.
type Permissions struct {
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

// UserPermissions are the patterns of PROTOCOL.md §6 for a user id.
func UserPermissions(user uuid.UUID) Permissions {
	id := regexp.QuoteMeta(user.String())
	return Permissions{
		Configure: `^reply\.` + id + `\..*`,
		Write:     `^(rpc_global_exchange|reply\.` + id + `\..*)$`,
		Read:      `^(reply|events)\.` + id + `\..*`,
	}
}

// NewPassword returns a random password for a broker account.
func NewPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ErrNotFound is returned for an account that does not exist.
var ErrNotFound = errors.New("rabbitmq: not found")

// PutUser creates (or updates) the account of user with password and no tags, and
// grants it UserPermissions on the client's vhost.
func (c *Client) PutUser(ctx context.Context, user uuid.UUID, password string) error {
	if err := c.do(ctx, http.MethodPut, "/api/users/"+url.PathEscape(user.String()),
		map[string]string{"password": password, "tags": ""}, nil); err != nil {
		return fmt.Errorf("create broker account %s: %w", user, err)
	}
	if err := c.do(ctx, http.MethodPut, "/api/permissions/"+url.PathEscape(c.vhost)+"/"+url.PathEscape(user.String()),
		UserPermissions(user), nil); err != nil {
		return fmt.Errorf("grant broker permissions to %s: %w", user, err)
	}
	return nil
}

// DeleteUser removes a user's account (and with it their permissions); closing their
// open connections is the broker's own doing. A missing account is not an error.
func (c *Client) DeleteUser(ctx context.Context, user uuid.UUID) error {
	err := c.do(ctx, http.MethodDelete, "/api/users/"+url.PathEscape(user.String()), nil, nil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete broker account %s: %w", user, err)
	}
	return nil
}

// GetPermissions returns a user's permissions on the client's vhost.
func (c *Client) GetPermissions(ctx context.Context, user uuid.UUID) (Permissions, error) {
	var p Permissions
	err := c.do(ctx, http.MethodGet, "/api/permissions/"+url.PathEscape(c.vhost)+"/"+url.PathEscape(user.String()), nil, &p)
	return p, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	// The path is already escaped: keep the escapes (a vhost "/" is "%2F").
	u := *c.base
	u.RawPath = strings.TrimRight(c.base.Path, "/") + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s %s: %w", method, path, ErrNotFound)
	}
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
