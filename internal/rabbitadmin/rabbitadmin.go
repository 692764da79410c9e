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
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Client talks to a broker's management API for one vhost: to one node, or to any of a
// cluster's nodes (accounts and permissions are cluster-wide).
type Client struct {
	nodes []apiNode
	next  atomic.Int64 // the node to ask first: the one that answered last
	vhost string
	http  *http.Client
}

// apiNode is one node's management API.
type apiNode struct {
	base       *url.URL // without credentials
	user, pass string
}

// New returns a client for apiURL (e.g. http://admin:secret@127.0.0.1:15672, whose
// credentials must have the administrator tag) managing accounts on vhost. apiURL may
// list several nodes of a cluster, comma-separated: a request goes to the first that
// answers, starting with the one that answered last.
func New(apiURL, vhost string) (*Client, error) {
	c := &Client{vhost: vhost, http: &http.Client{Timeout: 15 * time.Second}}
	for _, one := range strings.Split(apiURL, ",") {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(one), "/"))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("rabbitmq api url %q: not a URL", one)
		}
		n := apiNode{base: u}
		if u.User != nil {
			n.user = u.User.Username()
			n.pass, _ = u.User.Password()
			cp := *u
			cp.User = nil
			n.base = &cp
		}
		c.nodes = append(c.nodes, n)
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

// do sends one request, to each node in turn until one answers (a node that cannot be
// reached, or answers 503 while it starts or stops, passes the request on; every other
// answer, an error status included, is the answer). The requests are idempotent (PUT,
// DELETE, GET), so one a node took before the connection failed may be sent again.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	start := int(c.next.Load())
	var errs []error
	for i := range c.nodes {
		k := (start + i) % len(c.nodes)
		err := c.doAt(ctx, c.nodes[k], method, path, b, out)
		var unreachable *unreachableError
		if !errors.As(err, &unreachable) {
			c.next.Store(int64(k))
			return err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// unreachableError is a node that did not answer the request (the next one may).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func (c *Client) doAt(ctx context.Context, n apiNode, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The path is already escaped: keep the escapes (a vhost "/" is "%2F").
	u := *n.base
	u.RawPath = strings.TrimRight(n.base.Path, "/") + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(n.user, n.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return &unreachableError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s %s: %w", method, path, ErrNotFound)
	}
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("%s %s at %s: %s: %s", method, path, n.base.Host, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusServiceUnavailable {
			return &unreachableError{err}
		}
		return err
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
