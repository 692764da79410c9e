package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// followerCheckpoints are the checkpoints of every follower of the global order that
// syncd runs: the projector of each read model, the notifier and the binder.
var followerCheckpoints = map[string]string{
	"projector workspaces": `SELECT commit_pos, prepare_pos FROM proj_workspaces.checkpoint`,
	"projector accounts":   `SELECT commit_pos, prepare_pos FROM proj_accounts.checkpoint`,
	"notifier":             `SELECT commit_pos, prepare_pos FROM notify_checkpoints WHERE name = 'notifier'`,
	"binder":               `SELECT commit_pos, prepare_pos FROM notify_checkpoints WHERE name = 'binder'`,
}

// DESIGN invariant 6 for every follower syncd runs, not only for the store: an append
// held open (its position taken, not committed) holds back the projectors, the notifier
// and the binder. A commit to another workspace that commits meanwhile is applied and
// delivered by none of them (each has first reached the events before the held one: the
// positive control); once the held append commits, it is notified first and every
// follower moves past both.
//
// The followers are what this test is about: syncd runs without the inline read models
// and direct publishing, which would make the later commit readable and notified at
// once, rightly (it is durable), without asking any follower.
func TestFollowersNeverSkipAHeldAppend(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s, "-inline-projection=false", "-direct-publish=false")
	a := addUser(t, s, "Follower")
	other := sharedWorkspace(t, s, a, "Other")
	d := dialRaw(t, userURL(t, s, a), a.id)
	d.waitWorkspaceCount(2)
	dev := d.register("follow-pc")
	in := d.listen(dev)
	d.commit(a.workspace, dev, "c1", itemJSON(-1, "c1.txt", false, nil, 1))
	if n, _ := in.next(20 * time.Second); n.RequestID != "c1" {
		t.Fatalf("got %s, want c1", n.RequestID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	// Positive control: every follower has handled everything stored so far.
	var last eventstore.Position
	if err := db.QueryRow(ctx, `SELECT tx_id::text::bigint, global_pos FROM es_events ORDER BY tx_id DESC, global_pos DESC LIMIT 1`).
		Scan(&last.Commit, &last.Prepare); err != nil {
		t.Fatal(err)
	}
	waitFollowers(t, ctx, db, func(name string, p eventstore.Position) error {
		if p.Less(last) {
			return fmt.Errorf("%s at %s, not yet at %s", name, p, last)
		}
		return nil
	})

	// Hold open the next commit of the personal workspace, as a server would write it.
	st, err := postgres.Open(ctx, postgres.Config{DSN: s.dsn})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: Close waits for the held append's connection, which the
	// cleanup registered below releases first (cleanups run last in, first out).
	t.Cleanup(func() { st.Close() })
	stream := domain.WorkspaceStream(a.workspace)
	recs, err := st.ReadStream(ctx, stream, 1, 1000)
	if err != nil || len(recs) == 0 {
		t.Fatalf("read %s: %d records, %v", stream, len(recs), err)
	}
	prev := recs[len(recs)-1]
	id := domain.ItemID(1 << 40)
	typ, data, err := domain.Encode(domain.Committed{PrevHash: domain.ChainHash(prev.Type, prev.Data), WorkspaceID: a.workspace,
		WorkspaceVersion: 2, RequestID: "held", UserID: a.id, DeviceID: dev, CommittedAt: time.Now().UTC().Truncate(time.Millisecond),
		UsedQuota: 2, WorkspaceUsed: 2, Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true,
			Metadata: &domain.ItemMetadata{ID: &id, Version: 1, DeviceID: dev, WorkspaceID: a.workspace, Status: domain.StatusNew,
				ModifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Chunks: []string{"c"}, Size: 1, Filename: "held.bin",
				Mimetype: "application/octet-stream"}}}})
	if err != nil {
		t.Fatal(err)
	}
	commit, err := st.HoldOpenAppend(ctx, stream, eventstore.Record{ID: uuid.New(), Type: typ, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = commit() })

	// A commit to the other workspace goes through syncd and is stored after the held one.
	d.commit(other, dev, "after", itemJSON(-2, "after.txt", false, nil, 1))
	var after eventstore.Position
	testenv.Eventually(t, 20*time.Second, func() error {
		return db.QueryRow(ctx, `SELECT tx_id::text::bigint, global_pos FROM es_events WHERE stream_id = $1 AND event_type = $2`,
			domain.WorkspaceStream(other), domain.TypeCommitted).Scan(&after.Commit, &after.Prepare)
	})
	// Nothing past the held append: no follower moves to "after", it is not notified,
	// not readable. The wait is bounded; the followers were shown live above.
	in.none(2 * time.Second)
	if p := d.changesSince(other, 0); p.WorkspaceVersion != 0 {
		t.Fatalf("the workspaces projector applied a commit stored after a held append: version %d", p.WorkspaceVersion)
	}
	checkFollowers(t, ctx, db, func(name string, p eventstore.Position) error {
		if !p.Less(after) {
			return fmt.Errorf("%s moved to %s, past a held append, at or beyond %s", name, p, after)
		}
		return nil
	})

	if err := commit(); err != nil {
		t.Fatal(err)
	}
	// The held append comes first, then the one behind it.
	for _, want := range []string{"held", "after"} {
		if n, _ := in.next(20 * time.Second); n.RequestID != want {
			t.Fatalf("after the held append committed got %s v%d, want %s", n.RequestID, n.WorkspaceVersion, want)
		}
	}
	waitFollowers(t, ctx, db, func(name string, p eventstore.Position) error {
		if p.Less(after) {
			return fmt.Errorf("%s at %s, not yet at %s", name, p, after)
		}
		return nil
	})
	if p := d.changesSince(a.workspace, 1); p.WorkspaceVersion != 2 || len(p.Items) != 1 || *p.Items[0].Filename != "held.bin" {
		t.Fatalf("the held commit is not readable: %+v", p)
	}
	verifyHistory(t, s)
}

// checkFollowers runs check on every follower's checkpoint once.
func checkFollowers(t *testing.T, ctx context.Context, db *pgx.Conn, check func(name string, p eventstore.Position) error) {
	t.Helper()
	if err := eachFollower(ctx, db, check); err != nil {
		t.Fatal(err)
	}
}

// waitFollowers polls until check holds for every follower's checkpoint.
func waitFollowers(t *testing.T, ctx context.Context, db *pgx.Conn, check func(name string, p eventstore.Position) error) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error { return eachFollower(ctx, db, check) })
}

func eachFollower(ctx context.Context, db *pgx.Conn, check func(name string, p eventstore.Position) error) error {
	for name, q := range followerCheckpoints {
		var c, p int64
		if err := db.QueryRow(ctx, q).Scan(&c, &p); err != nil {
			return fmt.Errorf("checkpoint of %s: %w", name, err)
		}
		if err := check(name, eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}); err != nil {
			return err
		}
	}
	return nil
}
