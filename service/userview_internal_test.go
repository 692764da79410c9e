package service

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// The user snapshot Commit reads (loadUserView) is shared only while the user's state
// is unchanged: a device registered after it was taken is in the next one, a reset
// (an append of unknown outcome) drops it, and loadUser's copies stay private.
func TestLoadUserViewFollowsTheStream(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	defer store.Close()
	s := &Service{store: store, users: newCache(8, func(id uuid.UUID) *domain.User { return domain.NewUser(id) })}
	id, dev1, dev2 := uuid.New(), uuid.New(), uuid.New()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	appendEv := func(ev domain.Event) {
		typ, data, err := domain.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, domain.UserStream(id), eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: typ, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	appendEv(domain.UserCreated{UserID: id, Name: "u", Email: "u@example.org", At: at})
	appendEv(domain.DeviceRegistered{UserID: id, DeviceID: dev1, RequestID: "r1", Name: "d1", OS: "linux", At: at})

	v1, err := s.loadUserView(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v1.Device(dev1); !ok || !v1.Exists() {
		t.Fatalf("the view lacks the user or its device: %+v", v1)
	}
	again, err := s.loadUserView(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if again != v1 {
		t.Fatal("an unchanged user was copied again: the view is not shared")
	}
	if own, _ := s.loadUser(ctx, id, false); own == v1 {
		t.Fatal("loadUser handed out the shared view")
	}

	appendEv(domain.DeviceRegistered{UserID: id, DeviceID: dev2, RequestID: "r2", Name: "d2", OS: "linux", At: at})
	v2, err := s.loadUserView(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v2.Device(dev2); !ok {
		t.Fatal("the view after a new device's registration lacks it")
	}
	if _, ok := v1.Device(dev2); ok {
		t.Fatal("an earlier view changed under its readers")
	}

	s.users.get(id).reset(func(id uuid.UUID) *domain.User { return domain.NewUser(id) })
	if e := s.users.get(id); e.hasView {
		t.Fatal("reset kept the view of a state it forgot")
	}
}
