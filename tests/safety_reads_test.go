package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"

	"github.com/stacksync-es/syncservice/transport/wire"
)

// PROTOCOL.md §5, "reads see what was notified", across processes: two syncd processes
// share one database and one broker (requests go to either); one projects the read
// models, the other notifies. Devices commit new files concurrently to two workspaces of one owner.
// On every notifyCommit a device receives, it reads at once, through the request queue
// (so from either process): getChangesSince from just before the notified version,
// getItemVersions of every notified item, getWorkspaces' latestRevision and
// getAccountInfo's quotaUsed; each must reflect the notified commit. The first arrivals
// of each workspace come in workspaceVersion order, 1, 2, 3, … without a gap.
func TestReadsReflectWhatWasNotified(t *testing.T) {
	s := newServices(t)
	// The roles split as in a scale-out: the read models are projected in one process,
	// the notifier and the binder run in the other, so the in-process wake-up after an
	// append never lets the projector win the race by luck; both serve requests.
	startSyncd(t, s, "-roles", "rpc,notifier,binder")
	startSyncd(t, s, "-roles", "rpc,projector")
	alice := addUser(t, s, "Reader")
	team := sharedWorkspace(t, s, alice, "Team")
	spaces := []uuid.UUID{alice.workspace, team}

	reader := dialRaw(t, userURL(t, s, alice), alice.id)
	reader.waitWorkspaceCount(2)
	dev := reader.register("reader-pc")
	in := reader.listen(dev)

	const writers, perWriter = 4, 8
	total := writers * perWriter
	// The projector of the workspaces model is stalled (its checkpoint table locked) until
	// every commit is stored and a second more: a notifier that does not wait for the
	// read model publishes in that window, and the reads below, made at once, see the
	// stale model. A correct notifier publishes nothing before the release.
	released := stallProjector(t, s.dsn, total)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := dialRaw(t, userURL(t, s, alice), alice.id)
			for i := range perWriter {
				ws := spaces[(w+i)%len(spaces)]
				// Every commit adds a new file: the owner's usage only grows.
				k := int64(1 + w*perWriter + i)
				d.commit(ws, dev, fmt.Sprintf("w%d-%d", w, i), itemJSON(-k, fmt.Sprintf("w%d-%d.txt", w, i), false, nil, k))
			}
		}()
	}
	firsts := map[uuid.UUID][]int64{}
	seen := map[uuid.UUID]map[int64]bool{}
	for range total * 3 { // each version once, or a few times (at least once)
		if n := countFirsts(firsts); n == total {
			break
		}
		n, _ := in.next(60 * time.Second)
		ws := uuid.MustParse(n.WorkspaceID)
		if seen[ws] == nil {
			seen[ws] = map[int64]bool{}
		}
		if !seen[ws][n.WorkspaceVersion] {
			seen[ws][n.WorkspaceVersion] = true
			firsts[ws] = append(firsts[ws], n.WorkspaceVersion)
		}
		checkReadsReflect(t, reader, n)
	}
	wg.Wait()
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if n := countFirsts(firsts); n != total {
		t.Fatalf("%d of %d commits notified: %v", n, total, firsts)
	}
	for ws, vs := range firsts {
		for i, v := range vs {
			if v != int64(i+1) {
				t.Fatalf("workspace %s: first arrivals in the order %v, want 1, 2, 3, …", ws, vs)
			}
		}
	}
	verifyHistory(t, s)
}

// stallProjector locks the checkpoint table of the workspaces model, so its projector
// applies nothing, until total Committed events are in the store and a second has
// passed (bounded: at most 60s); then it releases the lock and reports on the channel.
func stallProjector(t *testing.T, dsn string, total int) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A table lock, not a row lock: a row lock would give this transaction an id and so
	// hold back every follower of the global order (pg_snapshot_xmin), the notifier too.
	// EXCLUSIVE blocks the projector's SELECT … FOR UPDATE of its checkpoint, not reads.
	if _, err := tx.Exec(ctx, `LOCK TABLE proj_workspaces.checkpoint IN EXCLUSIVE MODE`); err != nil {
		t.Fatalf("lock the projector's checkpoint: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		defer cancel()
		defer conn.Close(context.Background())
		deadline := time.Now().Add(60 * time.Second)
		var stored int
		for time.Now().Before(deadline) {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM es_events WHERE event_type = $1`, domain.TypeCommitted).Scan(&stored); err != nil {
				done <- err
				return
			}
			if stored >= total {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second) // the window in which a notifier must not publish
		if err := tx.Rollback(ctx); err != nil {
			done <- err
			return
		}
		if stored < total {
			done <- fmt.Errorf("%d of %d commits stored while the projector was stalled", stored, total)
			return
		}
		done <- nil
	}()
	return done
}

func countFirsts(m map[uuid.UUID][]int64) int {
	n := 0
	for _, vs := range m {
		n += len(vs)
	}
	return n
}

// checkReadsReflect reads, right after notification n arrived, everything PROTOCOL.md §5
// says must reflect it.
func checkReadsReflect(t *testing.T, d *rawDevice, n wire.CommitNotification) {
	t.Helper()
	ws := uuid.MustParse(n.WorkspaceID)
	show := func() string { b, _ := json.Marshal(n); return string(b) }

	var p wire.ChangesPage
	mustJSON(t, d.ok("getChangesSince", map[string]any{"requestId": "r-cs", "userId": d.user, "workspaceId": ws,
		"sinceVersion": n.WorkspaceVersion - 1}), &p)
	if p.WorkspaceVersion < n.WorkspaceVersion || p.ToVersion < n.WorkspaceVersion {
		t.Fatalf("getChangesSince(%d) after %s: workspaceVersion %d, toVersion %d", n.WorkspaceVersion-1, show(), p.WorkspaceVersion, p.ToVersion)
	}
	for _, c := range n.Items {
		if !c.CommitSucceed {
			t.Fatalf("commit failed: %s", show())
		}
		id, version := *c.Metadata.ID, *c.Metadata.Version
		found := false
		for _, it := range p.Items {
			found = found || (*it.ID == id && *it.Version >= version)
		}
		if !found {
			t.Fatalf("getChangesSince(%d) after %s lacks item %d v%d", n.WorkspaceVersion-1, show(), id, version)
		}
		var vs []wire.ItemMetadata
		mustJSON(t, d.ok("getItemVersions", map[string]any{"requestId": "r-iv", "userId": d.user, "workspaceId": ws, "itemId": id}), &vs)
		if len(vs) < int(version) || *vs[version-1].Version != version || *vs[version-1].Filename != *c.Metadata.Filename {
			t.Fatalf("getItemVersions(%d) after %s: %d versions", id, show(), len(vs))
		}
	}
	var spaces []wire.Workspace
	mustJSON(t, d.ok("getWorkspaces", map[string]any{"requestId": "r-ws", "userId": d.user}), &spaces)
	found := false
	for _, w := range spaces {
		if w.ID == n.WorkspaceID {
			found = true
			if w.LatestRevision < n.WorkspaceVersion {
				t.Fatalf("getWorkspaces after %s: latestRevision %d", show(), w.LatestRevision)
			}
		}
	}
	if !found {
		t.Fatalf("getWorkspaces after %s lacks the workspace", show())
	}
	var acct wire.AccountInfo
	mustJSON(t, d.ok("getAccountInfo", map[string]any{"requestId": "r-ai", "email": "reader@example.com"}), &acct)
	if acct.QuotaUsed < n.UsedQuota {
		t.Fatalf("getAccountInfo after %s: quotaUsed %d, below the notified usedQuota %d", show(), acct.QuotaUsed, n.UsedQuota)
	}
}

// PROTOCOL.md §4: a synchronous write's effect is visible to every read sent after its
// reply arrived. An outside client saw updateWorkspace followed by getWorkspaces show
// the old name in about half of the attempts while the read model was projected
// asynchronously. Two processes serve requests (either may take each one) and only one
// of them projects; 200 renames, each read back at once.
func TestUpdateWorkspaceThenGetWorkspaces(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s, "-roles", "rpc,notifier,binder")
	startSyncd(t, s, "-roles", "rpc,projector")
	alice := addUser(t, s, "Renamer")
	dev := dialRaw(t, userURL(t, s, alice), alice.id)
	dev.waitWorkspaces()
	for i := range 200 {
		name := fmt.Sprintf("name-%d", i)
		dev.ok("updateWorkspace", map[string]any{"requestId": "rename-" + name, "userId": alice.id,
			"workspaceId": alice.workspace, "workspaceName": name, "parentItemId": nil})
		var got []wire.Workspace
		mustJSON(t, dev.ok("getWorkspaces", map[string]any{"requestId": "list-" + name, "userId": alice.id}), &got)
		for _, w := range got {
			if w.ID == alice.workspace.String() && w.Name != name {
				t.Fatalf("rename %d: getWorkspaces right after updateWorkspace shows %q, want %q", i, w.Name, name)
			}
		}
	}
}
