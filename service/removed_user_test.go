package service_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/service"
)

// A removed user's device stays registered and the user stays a member of the
// workspaces, but a commit by them is Unauthorized and stores nothing: in their
// personal workspace and in another owner's shared one, through the process that removed
// them and through one that never cached them.
func TestRemovedUserCommitIsUnauthorized(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(t)
	owner, _, _ := userWithDevice(t, e, s, "olga")
	user, personal, dev := userWithDevice(t, e, s, "uma")
	shared, err := s.CreateWorkspace(ctx, owner, "team", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, shared, user, ""); err != nil {
		t.Fatal(err)
	}
	workspaces := []struct {
		name string
		id   uuid.UUID
	}{{"personal", personal}, {"shared", shared}}

	// Before the removal, the same commits are accepted.
	for _, ws := range workspaces {
		res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "before-" + ws.name, UserID: user, WorkspaceID: ws.id, DeviceID: dev,
			Items: []domain.ItemMetadata{file(-1, "a", nil, 1)}})
		if err != nil || !res.Event.Items[0].Succeeded {
			t.Fatalf("%s: commit before the removal: %+v, %v", ws.name, res, err)
		}
	}

	if err := s.RemoveUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	for _, by := range []struct {
		name string
		s    *service.Service
	}{{"the removing process", s}, {"another process", e.service(t)}} {
		for _, ws := range workspaces {
			before := e.streamVersion(t, domain.WorkspaceStream(ws.id))
			_, err := by.s.Commit(ctx, protocol.CommitRequest{RequestID: "after-" + ws.name, UserID: user, WorkspaceID: ws.id, DeviceID: dev,
				Items: []domain.ItemMetadata{file(-2, "b", nil, 1)}})
			if !errors.Is(err, protocol.ErrUnauthorized) {
				t.Errorf("%s, %s workspace: commit by a removed user: %v, want Unauthorized", by.name, ws.name, err)
			}
			if after := e.streamVersion(t, domain.WorkspaceStream(ws.id)); after != before {
				t.Errorf("%s, %s workspace: a removed user's commit appended %d events", by.name, ws.name, after-before)
			}
		}
	}
}
