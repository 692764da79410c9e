package service_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

func (e *env) serviceWith(t *testing.T, lim domain.Limits) *service.Service {
	t.Helper()
	if err := itemids.Migrate(context.Background(), e.pool); err != nil {
		t.Fatal(err)
	}
	cfg := service.DefaultConfig()
	cfg.Limits = lim
	s, err := service.New(cfg, e.store, e.q, itemids.NewPostgres(e.pool))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigLimits(t *testing.T) {
	c := service.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := domain.DefaultLimits()
	want.MaxEventBytes = eventstore.MaxRecordSize
	if c.Limits != want {
		t.Fatalf("default limits %+v, want %+v", c.Limits, want)
	}
	for _, lim := range []domain.Limits{{MaxEventBytes: eventstore.MaxRecordSize + 1}, {MaxDevicesPerUser: -1}} {
		c := service.Config{Limits: lim}
		if err := c.Validate(); err == nil {
			t.Errorf("limits %+v accepted", lim)
		}
	}
}

// Request fields out of bounds are ErrInvalid (InvalidRequest), checked before they
// reach PostgreSQL: none of them answers Internal, and nothing is stored.
func TestRequestFieldBounds(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "carol")
	long := strings.Repeat("x", 256)
	cases := map[string]func() error{
		"getAccountInfo e-mail NUL": func() error { _, err := s.AccountInfo(ctx, nil, "\x00"); return err },
		"getAccountInfo e-mail not UTF-8": func() error {
			_, err := s.AccountInfo(ctx, nil, "carol\xff@example.com")
			return err
		},
		"getAccountInfo e-mail of 255 bytes": func() error {
			_, err := s.AccountInfo(ctx, &user, strings.Repeat("c", 243)+"@example.com")
			return err
		},
		"create user e-mail NUL": func() error {
			_, _, err := s.CreateUser(ctx, service.NewUser{Name: "d", Email: "d\x00@example.com"})
			return err
		},
		"create user name of 256 bytes": func() error {
			_, _, err := s.CreateUser(ctx, service.NewUser{Name: long, Email: "d@example.com"})
			return err
		},
		"register deviceName NUL": func() error {
			_, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "r1", UserID: user, Name: "a\x00", OS: "linux"})
			return err
		},
		"register appVersion of 256 bytes": func() error {
			_, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "r2", UserID: user, Name: "a", OS: "linux", AppVersion: &long})
			return err
		},
		"update ip NUL": func() error {
			_, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "r3", UserID: user, DeviceID: &dev, Name: "a", OS: "linux", IP: ptr("\x00")})
			return err
		},
		"updateWorkspace name of 256 bytes": func() error {
			return s.UpdateWorkspace(ctx, protocol.UpdateWorkspaceRequest{RequestID: "r4", UserID: user, WorkspaceID: ws, Name: long})
		},
		"create workspace name NUL": func() error { _, err := s.CreateWorkspace(ctx, user, "w\x00", false); return err },
		"add member name of 256 bytes": func() error {
			other, _, _ := userWithDevice(t, e, s, "dave")
			return s.AddMember(ctx, ws, other, long)
		},
	}
	for name, call := range cases {
		err := call()
		if !errors.Is(err, protocol.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.AccountInfo(ctx, &user, strings.Repeat("c", 242)+"@example.com"); !errors.Is(err, protocol.ErrUserNotFound) {
		t.Errorf("an e-mail of 254 bytes: %v, want UserNotFound", err)
	}
}

// A user holds at most MaxDevicesPerUser devices; RemoveDevice frees a slot, the
// removed device's commits are refused, and the accounts read model drops it.
func TestDeviceCapAndRemoveDevice(t *testing.T) {
	e := newEnv(t)
	s := e.serviceWith(t, domain.Limits{MaxDevicesPerUser: 2})
	ctx := context.Background()
	user, ws, first := userWithDevice(t, e, s, "erin")
	if _, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "second", UserID: user, Name: "b", OS: "linux"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "third", UserID: user, Name: "c", OS: "linux"})
	if !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), "limit is 2 devices per user") ||
		!strings.Contains(err.Error(), "syncctl device remove") {
		t.Fatalf("third device: %v", err)
	}
	if _, err := s.RemoveDevice(ctx, user, first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveDevice(ctx, user, first); !errors.Is(err, protocol.ErrDeviceNotValid) {
		t.Fatalf("removing it again: %v", err)
	}
	if _, err := s.RemoveDevice(ctx, uuid.New(), first); !errors.Is(err, protocol.ErrUserNotFound) {
		t.Fatalf("removing a device of no user: %v", err)
	}
	_, err = s.Commit(ctx, protocol.CommitRequest{RequestID: "c1", UserID: user, WorkspaceID: ws, DeviceID: first,
		Items: []domain.ItemMetadata{folder(-1, "docs")}})
	if !errors.Is(err, protocol.ErrUnauthorized) {
		t.Fatalf("commit from the removed device: %v", err)
	}
	if _, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "third", UserID: user, Name: "c", OS: "linux"}); err != nil {
		t.Fatalf("registration after a removal: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		ds, err := e.q.DevicesOf(ctx, user)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.ID == first {
				return fmt.Errorf("removed device %s still listed", first)
			}
		}
		if len(ds) != 2 {
			return fmt.Errorf("%d devices listed, want 2", len(ds))
		}
		return nil
	})
}

// Commit bounds: too many items are refused before anything is reserved; a commit whose
// event would pass MaxEventBytes is refused while it is decided, with a split-it
// message, and appends nothing.
func TestCommitBounds(t *testing.T) {
	e := newEnv(t)
	s := e.serviceWith(t, domain.Limits{MaxCommitItems: 3, MaxEventBytes: 1200})
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "frank")
	items := []domain.ItemMetadata{folder(-1, "a"), folder(-2, "b"), folder(-3, "c"), folder(-4, "d")}
	_, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "c1", UserID: user, WorkspaceID: ws, DeviceID: dev, Items: items})
	if !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), "limit is 1 to 3 per commit") {
		t.Fatalf("4 items: %v", err)
	}
	_, err = s.Commit(ctx, protocol.CommitRequest{RequestID: "c2", UserID: user, WorkspaceID: ws, DeviceID: dev, Items: items[:3]})
	if !errors.Is(err, protocol.ErrInvalid) || !errors.Is(err, domain.ErrEventTooLarge) || !strings.Contains(err.Error(), "split it") {
		t.Fatalf("3 items over 1,200 bytes: %v", err)
	}
	res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "c3", UserID: user, WorkspaceID: ws, DeviceID: dev, Items: items[:1]})
	if err != nil || res.Event.WorkspaceVersion != 1 {
		t.Fatalf("1 item: %+v %v (the refused commits must have appended nothing)", res, err)
	}
}
