package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

// After a share (made through the service syncctl opens, which writes the read models
// inline as syncd does): `syncctl projections verify` finds the live models identical to
// a rebuild, `projections rebuild` then `verify` again too, `audit verify --all` finds
// both streams whole, and `audit item` asked of the shared workspace tells the moved
// file's life from its creation in the personal workspace.
//
// The commit and the share are made, and the models rebuilt and verified, while a
// transaction stays open elsewhere, holding the store's global order back before them,
// as any test's open transaction in the PostgreSQL cluster can: the rebuild's replay
// cannot reach them, so its swap must carry them over from the inline appends (no
// projector runs here to apply them later).
func TestSyncctlAfterAShare(t *testing.T) {
	globals.pgDSN = testenv.PostgresDSN(t)
	ctx := context.Background()
	a, err := openAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	alice, home, err := a.svc.CreateUser(ctx, service.NewUser{Name: "alice", Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.svc.CreateUser(ctx, service.NewUser{Name: "bob", Email: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	dev, err := a.svc.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "r", UserID: alice, Name: "laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	hold, err := pgx.Connect(ctx, globals.pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(context.Background())
	if _, err := hold.Exec(ctx, `BEGIN; SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	docsTemp, fileTemp, parent := int64(-1), int64(-2), domain.ItemID(-1)
	res, err := a.svc.Commit(ctx, protocol.CommitRequest{RequestID: "tree", UserID: alice, WorkspaceID: home, DeviceID: dev.ID,
		Items: []domain.ItemMetadata{
			{TempID: &docsTemp, Version: 1, Status: domain.StatusNew, ModifiedAt: at, IsFolder: true, Filename: "docs",
				Mimetype: "inode/directory", Chunks: []string{}},
			{TempID: &fileTemp, Version: 1, Status: domain.StatusNew, ModifiedAt: at, ParentID: &parent, Filename: "a.txt",
				Mimetype: "text/plain", Size: 10, Checksum: 42, Chunks: []string{"c1"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	docs, file := *res.Event.Items[0].Metadata.ID, *res.Event.Items[1].Metadata.ID
	share, err := a.svc.Share(ctx, service.ShareRequest{RequestID: "share-1", UserID: alice, ItemID: docs, Emails: []string{"bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		defer rootCmd.SetOut(nil)
		rootCmd.SetArgs(append([]string{"--pg", globals.pgDSN}, args...))
		if err := rootCmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("syncctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	for _, args := range [][]string{
		{"projections", "verify", "workspaces"},
		{"projections", "rebuild", "workspaces"},
		{"projections", "verify", "workspaces"},
	} {
		out := run(args...)
		if args[1] == "verify" && !strings.Contains(out, "workspaces: identical to a rebuild") {
			t.Fatalf("syncctl %s: %s", strings.Join(args, " "), out)
		}
		// The reads see the share whatever the command did to the tables.
		items, version, err := a.q.Changes(ctx, share.WorkspaceID)
		if err != nil || version != 1 || len(items) != 1 || *items[0].ID != file {
			t.Fatalf("after syncctl %s: getChanges of the share: version %d, %d items, %v; want version 1, the moved file",
				strings.Join(args, " "), version, len(items), err)
		}
	}
	if _, err := hold.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	run("audit", "verify", "--all")
	life := run("audit", "item", "--workspace", share.WorkspaceID.String(), "--item", strconv.FormatInt(int64(file), 10), "--format", "jsonl")
	for _, want := range []string{`"workspaceId":"` + home.String(), domain.TypeItemsMovedOut, domain.TypeItemsMovedIn,
		`"workspaceId":"` + share.WorkspaceID.String()} {
		if !strings.Contains(life, want) {
			t.Errorf("audit item of the moved file lacks %s:\n%s", want, life)
		}
	}
}
