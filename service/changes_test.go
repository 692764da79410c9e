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

// TestEncodedChangesCache checks that a cached getChanges answer is served again while
// nothing is committed to its workspace, and never once a commit is visible in the read
// model (as it is before its notification is published), nor after the read model was
// rewritten at the same version (a restore or a rebuild).
func TestEncodedChangesCache(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "carol")
	cache := service.NewChangesCache(1 << 20)

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
	get := func(want string, hits int64) {
		t.Helper()
		pieces, err := s.EncodedChanges(ctx, user, ws, testEnc, cache)
		if err != nil {
			t.Fatal(err)
		}
		body := bytes.Join(pieces, nil)
		if string(body) != want {
			t.Fatalf("answer %s, want %s", body, want)
		}
		if st := cache.Stats(); st.Hits != hits || st.Entries != 1 || st.Bytes != int64(len(body)) {
			t.Fatalf("cache %+v, want %d hits and the one answer", st, hits)
		}
	}

	commit("c1", folder(-1, "docs"), file(-2, "a.txt", nil, 10))
	first := uncached(t, s, user, ws)
	get(first, 0)
	get(first, 1) // nothing committed: a lookup

	commit("c2", file(-3, "b.txt", nil, 5))
	second := uncached(t, s, user, ws)
	if second == first {
		t.Fatal("the second commit changed nothing")
	}
	get(second, 1) // the commit is visible: never the cached answer
	get(second, 2)

	// The read model rewritten at the same version (restored from a copy with other
	// items): the row's tag changes, the old answer is not served.
	if _, err := e.pool.Exec(ctx, `UPDATE proj_workspaces.items SET filename = 'restored' WHERE workspace_id = $1`, ws); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE proj_workspaces.workspaces SET version = version WHERE workspace_id = $1`, ws); err != nil {
		t.Fatal(err)
	}
	restored := uncached(t, s, user, ws)
	get(restored, 2)

	// The checks before the cache still hold: a non-member is refused.
	stranger, _, _ := userWithDevice(t, e, s, "mallory")
	if _, err := s.EncodedChanges(ctx, stranger, ws, testEnc, cache); !errors.Is(err, protocol.ErrUnauthorized) {
		t.Fatalf("a non-member: %v, want Unauthorized", err)
	}
}

// TestChangesCacheBound checks that the cache keeps one answer per workspace, drops the
// least recently used past its bytes, and keeps no answer larger than its bound.
func TestChangesCacheBound(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	type member struct{ user, ws uuid.UUID }
	var ms []member
	for _, name := range []string{"u1", "u2", "u3"} {
		user, ws, dev := userWithDevice(t, e, s, name)
		res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "c", UserID: user, WorkspaceID: ws, DeviceID: dev,
			Items: []domain.ItemMetadata{file(-1, "0123456789", nil, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.q.WaitForWorkspaceVersion(ctx, ws, res.Event.WorkspaceVersion); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{user, ws})
	}
	pieces, err := s.EncodedChanges(ctx, ms[0].user, ms[0].ws, testEnc, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(bytes.Join(pieces, nil))) // every answer has this size (ids have as many digits)
	cache := service.NewChangesCache(2 * n)
	for _, i := range []int{0, 1, 0, 2} { // 1 is the least recently used when 2 comes
		if _, err := s.EncodedChanges(ctx, ms[i].user, ms[i].ws, testEnc, cache); err != nil {
			t.Fatal(err)
		}
	}
	if st := cache.Stats(); st.Entries != 2 || st.Bytes != 2*n || st.Hits != 1 {
		t.Fatalf("cache %+v, want 2 answers of %d bytes, 1 hit", st, n)
	}
	for _, i := range []int{0, 2} {
		if _, err := s.EncodedChanges(ctx, ms[i].user, ms[i].ws, testEnc, cache); err != nil {
			t.Fatal(err)
		}
	}
	if st := cache.Stats(); st.Hits != 3 {
		t.Fatalf("cache %+v: the two most recent answers should have been kept", st)
	}
	small := service.NewChangesCache(n - 1)
	if _, err := s.EncodedChanges(ctx, ms[0].user, ms[0].ws, testEnc, small); err != nil {
		t.Fatal(err)
	}
	if st := small.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("an answer over the bound was kept: %+v", st)
	}
	if service.NewChangesCache(0) != nil {
		t.Fatal("a cache of 0 bytes should be none")
	}
}
