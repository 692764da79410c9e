package rabbitadmin

import (
	"context"
	"errors"
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
