package rabbitadmin

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

func TestUserAccountLifecycle(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	u, _ := url.Parse(amqpURL)
	vhost := strings.TrimPrefix(u.Path, "/")
	c, err := New(testenv.ManagementURL(), vhost)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user := uuid.New()
	pw, err := NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutUser(ctx, user, pw); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteUser(context.Background(), user) })
	got, err := c.GetPermissions(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if got != UserPermissions(user) {
		t.Fatalf("permissions %+v, want %+v", got, UserPermissions(user))
	}
	// The account logs in, and only as itself.
	u.User = url.UserPassword(user.String(), pw)
	conn, err := amqp.Dial(u.String())
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	conn.Close()
	if err := c.DeleteUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPermissions(ctx, user); !errors.Is(err, ErrNotFound) {
		t.Fatalf("permissions after delete: %v", err)
	}
	if _, err := amqp.Dial(u.String()); err == nil {
		t.Fatal("a deleted account still logs in")
	}
	if err := c.DeleteUser(ctx, user); err != nil {
		t.Fatalf("deleting a missing account: %v", err)
	}
}

func TestPermissionPatternsAreAnchored(t *testing.T) {
	id := uuid.MustParse("6f1d8a52-3c0e-4b7e-9a55-0c1f4e2b9d71")
	p := UserPermissions(id)
	want := Permissions{
		Configure: `^reply\.6f1d8a52-3c0e-4b7e-9a55-0c1f4e2b9d71\..*`,
		Write:     `^(rpc_global_exchange|reply\.6f1d8a52-3c0e-4b7e-9a55-0c1f4e2b9d71\..*)$`,
		Read:      `^(reply|events)\.6f1d8a52-3c0e-4b7e-9a55-0c1f4e2b9d71\..*`,
	}
	if p != want {
		t.Fatalf("patterns %+v, want exactly PROTOCOL.md §6's %+v", p, want)
	}
}

// Several nodes: a node that cannot be reached passes the request on to the next; a
// node's error answer (404) is the answer, not a reason to ask another.
func TestAnyReachableNode(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	u, _ := url.Parse(amqpURL)
	vhost := strings.TrimPrefix(u.Path, "/")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://guest:guest@" + l.Addr().String()
	l.Close() // refuses connections from now on
	c, err := New(dead+","+testenv.ManagementURL(), vhost)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user := uuid.New()
	if err := c.PutUser(ctx, user, "pw-"+user.String()); err != nil {
		t.Fatalf("PutUser with the first node down: %v", err)
	}
	t.Cleanup(func() { _ = c.DeleteUser(context.Background(), user) })
	if got, err := c.GetPermissions(ctx, user); err != nil || got != UserPermissions(user) {
		t.Fatalf("permissions %+v, %v", got, err)
	}
	if _, err := c.GetPermissions(ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a missing account: %v, want ErrNotFound", err)
	}
	only, err := New(dead, vhost)
	if err != nil {
		t.Fatal(err)
	}
	if err := only.PutUser(ctx, uuid.New(), "pw"); err == nil {
		t.Fatal("PutUser with no node reachable succeeded")
	}
}
