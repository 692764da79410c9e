package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/offheap"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// pgService runs the real service over PostgreSQL (store, projectors, read models), as
// a server does.
func pgService(t *testing.T) (*service.Service, *projections.Queries, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dsn := testenv.PostgresDSN(t)
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := itemids.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range []string{projections.ModelWorkspaces, projections.ModelAccounts} {
		p, err := projections.New(projections.Config{Model: m, DSN: dsn, Pool: pool, Source: store, LeaderRetry: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		pool.Close()
		store.Close()
	})
	q := projections.NewQueries(pool)
	svc, err := service.New(service.DefaultConfig(), store, q, itemids.NewPostgres(pool))
	if err != nil {
		t.Fatal(err)
	}
	return svc, q, pool
}

// TestGetChangesCacheNeverStale checks, through RabbitMQ against the real service on
// PostgreSQL, that a getChanges reply is byte for byte the old encoding (the items of
// Changes as wire structs, one json.Marshal), that an unchanged workspace is answered
// from the cache, and that a commit visible in the read model before the request (as it
// is before its notification goes out, PROTOCOL.md §5) is always in the reply, also when
// the reply is patched from the cached one (creates, changes, moves, deletes).
func TestGetChangesCacheNeverStale(t *testing.T) {
	svc, q, pool := pgService(t)
	ctx := context.Background()
	url := testenv.AMQPURL(t)
	srv := rpctest.StartServer(t, rpc.Config{URL: url, Auth: rpc.AuthTrust, Concurrency: 4, PerUserInFlight: -1}, svc)

	user, ws, err := svc.CreateUser(ctx, service.NewUser{Name: "dora", Email: "dora@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := svc.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: user, Name: "laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	commit := func(req string, items ...domain.ItemMetadata) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error { // the device is known once the user's events are read
			res, err := svc.Commit(ctx, protocol.CommitRequest{RequestID: req, UserID: user, WorkspaceID: ws, DeviceID: dev.ID, Items: items})
			if err != nil {
				return err
			}
			return q.WaitForWorkspaceVersion(ctx, ws, res.Event.WorkspaceVersion)
		})
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	item := func(temp int64, name string, parent *domain.ItemID, folder bool) domain.ItemMetadata {
		md := domain.ItemMetadata{TempID: &temp, Version: 1, Status: domain.StatusNew, ModifiedAt: at, ParentID: parent,
			IsFolder: folder, Filename: name, Mimetype: "text/plain", Chunks: []string{}}
		if !folder {
			md.Size, md.Checksum, md.Chunks = 3, 7, []string{"c-" + name}
		}
		return md
	}
	r := dialRaw(t, url, user, "")
	params := map[string]any{"requestId": "g", "userId": user.String(), "workspaceId": ws.String()}
	// getChanges returns the reply's body after checking it against the old encoding.
	getChanges := func(wantOld bool) string {
		t.Helper()
		d, resp := r.call(wire.MethodGetChanges, params)
		if resp.Error != nil {
			t.Fatalf("getChanges: %+v", resp.Error)
		}
		items, err := svc.Changes(ctx, user, ws)
		if err != nil {
			t.Fatal(err)
		}
		old, err := wire.EncodeResponse(resp.ID, wire.FromItems(items), nil)
		if err != nil {
			t.Fatal(err)
		}
		if (string(d.Body) == string(old)) != wantOld {
			t.Fatalf("reply\n%s\nthe old encoding of the read model now\n%s\n(want them equal: %v)", d.Body, old, wantOld)
		}
		return string(d.Body)
	}

	commit("c1", item(-1, "docs", nil, true), item(-2, "ünïcode <&> \u2028.txt", ptr(domain.ItemID(-1)), false))
	first := getChanges(true)
	// Rows changed behind the read model's back (no commit: the workspace's stamp is
	// the same): the cached reply is what comes back.
	rename := func(from, to string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE proj_workspaces.items SET filename = $3 WHERE workspace_id = $1 AND filename = $2`, ws, from, to); err != nil {
			t.Fatal(err)
		}
	}
	rename("docs", "behind the back")
	head := func(body string) string { return body[:strings.LastIndex(body, `,"id":`)] } // the reply less its id
	if again := getChanges(false); head(again) != head(first) {
		t.Fatalf("an unchanged workspace was not answered from the cache:\n%s\nthen\n%s", first, again)
	}
	rename("behind the back", "docs") // back to what the history says, which a patch keeps
	// A commit: visible in the read model before the request, so in the reply.
	commit("c2", item(-3, "b.txt", nil, false))
	if third := getChanges(true); !strings.Contains(third, `"b.txt"`) {
		t.Fatalf("the reply after a commit lacks it: %s", third)
	}
	getChanges(true) // and again, from the cache
	if n := rpc.ChangesPatched(srv); n != 1 {
		t.Fatalf("%d replies patched, want the one after c2", n)
	}
	// More commits, each read right after: the patched replies are the full read's.
	current := func(id domain.ItemID) domain.ItemMetadata {
		t.Helper()
		items, err := svc.Changes(ctx, user, ws)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if *it.ID == id {
				it.Version++
				it.TempID = nil
				return it
			}
		}
		t.Fatalf("no item %d", id)
		return domain.ItemMetadata{}
	}
	var ids []domain.ItemID
	items, err := svc.Changes(ctx, user, ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		ids = append(ids, *it.ID) // docs, its file, b.txt
	}
	moved := current(ids[2])
	moved.Status, moved.ParentID = domain.StatusMoved, &ids[0]
	commit("c3", moved, item(-4, "new folder", nil, true))
	getChanges(true)
	changed := current(ids[1])
	changed.Status, changed.Size, changed.Chunks = domain.StatusChanged, 5, []string{"c-new"}
	commit("c4", changed)
	getChanges(true)
	deleted := current(ids[0])
	deleted.Status = domain.StatusDeleted
	commit("c5", deleted)
	getChanges(true)
	if n := rpc.ChangesPatched(srv); n != 4 {
		t.Fatalf("%d replies patched, want 4", n)
	}
}

func ptr[T any](v T) *T { return &v }

// A full read of a large workspace renders its items into blocks outside the heap
// (projections' arena) and the server releases them once the reply is copied out:
// after each getChanges only the reply buffers stay mapped, and the reply is the
// encoding of the read model's items.
func TestFullReadReleasesItsRenderBlocks(t *testing.T) {
	svc, q, _ := pgService(t)
	ctx := context.Background()
	url := testenv.AMQPURL(t)
	rpctest.StartServer(t, rpc.Config{URL: url, Auth: rpc.AuthTrust, Concurrency: 4, PerUserInFlight: -1}, svc)
	user, ws, err := svc.CreateUser(ctx, service.NewUser{Name: "erin", Email: "erin@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := svc.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: user, Name: "laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	const perCommit, commits = 2000, 4 // ~2.5 MB of answer: its render blocks reach 1 MiB
	for c := range commits {
		items := make([]domain.ItemMetadata, perCommit)
		for i := range items {
			temp := int64(-1 - c*perCommit - i)
			items[i] = domain.ItemMetadata{TempID: &temp, Version: 1, Status: domain.StatusNew, ModifiedAt: at,
				Filename: fmt.Sprintf("file-%d-%d-%s.txt", c, i, strings.Repeat("n", 60)), Mimetype: "text/plain",
				Size: 3, Checksum: 7, Chunks: []string{fmt.Sprintf("chunk-%d-%d", c, i)}}
		}
		testenv.Eventually(t, 30*time.Second, func() error { // the device is known once the user's events are read
			res, err := svc.Commit(ctx, protocol.CommitRequest{RequestID: fmt.Sprint("c", c), UserID: user, WorkspaceID: ws, DeviceID: dev.ID, Items: items})
			if err != nil {
				return err
			}
			return q.WaitForWorkspaceVersion(ctx, ws, res.Event.WorkspaceVersion)
		})
	}
	r := dialRaw(t, url, user, "")
	params := map[string]any{"requestId": "g", "userId": user.String(), "workspaceId": ws.String()}
	d, resp := r.call(wire.MethodGetChanges, params)
	if resp.Error != nil {
		t.Fatalf("getChanges: %+v", resp.Error)
	}
	items, err := svc.Changes(ctx, user, ws)
	if err != nil || len(items) != perCommit*commits {
		t.Fatalf("the read model holds %d items, %v", len(items), err)
	}
	if want, err := wire.EncodeResponse(resp.ID, wire.FromItems(items), nil); err != nil || string(d.Body) != string(want) {
		t.Fatalf("a %d-byte reply unlike the read model's %d-byte encoding (%v)", len(d.Body), len(want), err)
	}
	if len(d.Body) < 2<<20 {
		t.Fatalf("a reply of %d bytes: the test needs one of several MiB", len(d.Body))
	}
	if rest := offheap.Mapped() - rpc.OffHeapReplyBytes(); rest != 0 {
		t.Fatalf("%d bytes of the read's render blocks still mapped after the reply", rest)
	}
}
