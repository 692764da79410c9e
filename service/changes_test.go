package service_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/service"
)

// testEnc renders an item as id:version:status:filename.
func testEnc(dst []byte, md *domain.ItemMetadata) []byte {
	dst = strconv.AppendInt(dst, int64(*md.ID), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, md.Version, 10)
	return fmt.Appendf(dst, ":%s:%s", md.Status, md.Filename)
}

// uncached is the answer rendered from Changes, item by item.
func uncached(t *testing.T, s *service.Service, user, ws uuid.UUID) string {
	t.Helper()
	items, err := s.Changes(context.Background(), user, ws)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{'['}
	for i := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = testEnc(out, &items[i])
	}
	return string(append(out, ']'))
}

// TestChangesStamp checks that the stamp a getChanges answer may be served again under
// stays while nothing is committed to the workspace, and changes once a commit is
// visible in the read model (as it is before its notification is published) and once
// the read model is rewritten at the same version (a restore or a rebuild); and that
// EncodedChanges gives the answer Changes gives, with the stamp it was read at.
func TestChangesStamp(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "carol")

	commit := func(req string, items ...domain.ItemMetadata) {
		t.Helper()
		res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: req, UserID: user, WorkspaceID: ws, DeviceID: dev, Items: items})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.q.WaitForWorkspaceVersion(ctx, ws, res.Event.WorkspaceVersion); err != nil {
			t.Fatal(err)
		}
	}
	stamp := func() service.ChangesStamp {
		t.Helper()
		st, ok, err := s.ChangesStamp(ctx, user, ws)
		if err != nil || !ok {
			t.Fatalf("stamp: %v, %v", ok, err)
		}
		pieces, at, err := s.EncodedChanges(ctx, user, ws, testEnc)
		if err != nil {
			t.Fatal(err)
		}
		if body, want := string(bytes.Join(pieces, nil)), uncached(t, s, user, ws); body != want || at != st {
			t.Fatalf("answer %s at %+v, want %s at %+v", body, at, want, st)
		}
		return st
	}

	commit("c1", folder(-1, "docs"), file(-2, "a.txt", nil, 10))
	first := stamp()
	if again := stamp(); again != first {
		t.Fatalf("nothing committed, yet the stamp went from %+v to %+v", first, again)
	}
	commit("c2", file(-3, "b.txt", nil, 5))
	second := stamp()
	if second == first || second.Version != first.Version+1 {
		t.Fatalf("a commit took the stamp from %+v to %+v", first, second)
	}
	// The read model rewritten at the same version (restored from a copy with other
	// items): the same version, another stamp.
	if _, err := e.pool.Exec(ctx, `UPDATE proj_workspaces.items SET filename = 'restored' WHERE workspace_id = $1`, ws); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE proj_workspaces.workspaces SET version = version WHERE workspace_id = $1`, ws); err != nil {
		t.Fatal(err)
	}
	if restored := stamp(); restored == second || restored.Version != second.Version {
		t.Fatalf("a rewrite took the stamp from %+v to %+v", second, restored)
	}

	stranger, _, _ := userWithDevice(t, e, s, "mallory")
	if _, _, err := s.ChangesStamp(ctx, stranger, ws); !errors.Is(err, protocol.ErrUnauthorized) {
		t.Fatalf("a non-member's stamp: %v, want Unauthorized", err)
	}
	if _, _, err := s.EncodedChanges(ctx, stranger, ws, testEnc); !errors.Is(err, protocol.ErrUnauthorized) {
		t.Fatalf("a non-member's changes: %v, want Unauthorized", err)
	}
}
