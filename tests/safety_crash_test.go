package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// verifyHistory ends a test that ran real traffic: every read model equals a rebuild
// from the history (DESIGN invariant 5) and every stream's hash chain is intact.
func verifyHistory(t *testing.T, s services) {
	t.Helper()
	out := syncctl(t, s, "projections", "verify")
	if strings.Count(out, "identical to a rebuild") < 2 {
		t.Fatalf("projections verify:\n%s", out)
	}
	syncctl(t, s, "audit", "verify", "--all")
}

// storedCommit reads the workspace's stream straight from the event store and returns
// the Committed event of requestID, failing if it is not stored.
func storedCommit(t *testing.T, s services, ws uuid.UUID, requestID string) domain.Committed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{DSN: s.dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ReadStream(ctx, domain.WorkspaceStream(ws), 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type != domain.TypeCommitted {
			continue
		}
		ev, err := domain.Decode(r.Type, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if c := ev.(domain.Committed); c.RequestID == requestID {
			return c
		}
	}
	t.Fatalf("commit %s is not in the event store", requestID)
	panic("unreachable")
}

// DESIGN invariant 4 and PROTOCOL.md §5 (at least once, after durability), through the
// crash window itself: syncd is killed (SIGKILL, by the fault-injection hook
// SYNCD_TEST_CRASH_BEFORE_PUBLISH) after commit c3's event is durable and before its
// notifyCommit is published. The device has seen v1 and v2 and not v3; the event is in
// the store; a new syncd publishes it, with workspaceVersion exactly 3, and it is
// readable.
func TestCrashBetweenDurableAndPublish(t *testing.T) {
	s := newServices(t)
	a := addUser(t, s, "Crash")
	t.Setenv(crashBeforePublishEnv, fmt.Sprintf("%s:3", a.workspace))
	first := startSyncd(t, s)
	os.Unsetenv(crashBeforePublishEnv) // the next process runs without the fault

	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("crash-pc")
	in := d.listen(dev)
	for v := int64(1); v <= 2; v++ {
		d.commit(a.workspace, dev, fmt.Sprintf("c%d", v), itemJSON(-v, fmt.Sprintf("f%d", v), false, nil, v))
		if n, _ := in.next(20 * time.Second); n.WorkspaceVersion != v || n.RequestID != fmt.Sprintf("c%d", v) {
			t.Fatalf("got %s v%d, want c%d v%d", n.RequestID, n.WorkspaceVersion, v, v)
		}
	}
	d.commit(a.workspace, dev, "c3", itemJSON(-3, "f3", false, nil, 3))
	select {
	case <-first.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("syncd was not killed before publishing v3")
	}
	if err := first.waitLog("fault injection: killing syncd before publishing"); err != nil {
		t.Fatalf("syncd died, but not by the fault injection: %v", err)
	}
	// Durable before the crash: the event is in the store, with version 3.
	if c := storedCommit(t, s, a.workspace, "c3"); c.WorkspaceVersion != 3 {
		t.Fatalf("c3 stored as workspace version %d", c.WorkspaceVersion)
	}
	// Not published: the only publisher died first (v1 and v2 arrived above, so the
	// queue is live; nothing else can publish while no syncd runs).
	in.none(time.Second)

	startSyncd(t, s)
	// At least once: v3 arrives, exactly as committed (redeliveries of v1 and v2, whose
	// checkpoint the crash may have lost, are allowed before it).
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, _ := in.next(time.Until(deadline))
		if n.RequestID != "c3" {
			if n.WorkspaceVersion < 1 || n.WorkspaceVersion > 2 || n.RequestID != fmt.Sprintf("c%d", n.WorkspaceVersion) {
				t.Fatalf("after restart got %s v%d", n.RequestID, n.WorkspaceVersion)
			}
			continue
		}
		if n.WorkspaceVersion != 3 || n.WorkspaceID != a.workspace.String() || len(n.Items) != 1 || !n.Items[0].CommitSucceed ||
			*n.Items[0].Metadata.Filename != "f3" || *n.Items[0].Metadata.Version != 1 {
			b, _ := json.Marshal(n)
			t.Fatalf("c3 notified as %s", b)
		}
		break
	}
	// Readable (reads reflect what was notified): the read right after the event.
	p := d.changesSince(a.workspace, 2)
	if p.WorkspaceVersion != 3 || p.ToVersion != 3 || len(p.Items) != 1 || *p.Items[0].Filename != "f3" {
		b, _ := json.Marshal(p)
		t.Fatalf("getChangesSince(2) after c3 was notified: %s", b)
	}
	var versions []wire.ItemMetadata
	mustJSON(t, d.ok("getItemVersions", map[string]any{"requestId": "iv", "userId": a.id, "workspaceId": a.workspace,
		"itemId": *p.Items[0].ID}), &versions)
	if len(versions) != 1 || *versions[0].Filename != "f3" {
		t.Fatalf("getItemVersions of c3's item: %+v", versions)
	}
	verifyHistory(t, s)
}

// failCommitsOf makes PostgreSQL refuse, at COMMIT, every transaction that wrote an
// event whose data contains marker: a deferred constraint trigger on the event table
// fires after the append's rows were written (their positions taken) and raises, so the
// whole append transaction rolls back at its very last step. It is removed with the test
// database.
func failCommitsOf(t *testing.T, dsn, marker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE FUNCTION safety_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'injected failure at commit of event %', NEW.event_id; END $$`,
		fmt.Sprintf(`CREATE CONSTRAINT TRIGGER safety_fail_at_commit AFTER INSERT ON es_events
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (position(%s::bytea IN NEW.data) > 0) EXECUTE FUNCTION safety_fail_at_commit()`,
			"'"+strings.ReplaceAll(marker, "'", "''")+"'"),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("install the failure at commit: %v", err)
		}
	}
}

// The inverse of the crash window (DESIGN invariant 4: no notification before
// durability): an append transaction that fails at its COMMIT, after its rows were
// written and its position taken, i.e. after every point where a publish could be
// attempted, is never notified. The device gets an error reply; the device's event
// queue (bound to the workspace's exchange) receives the next commit as the same
// workspaceVersion and nothing for the failed one, within a bounded wait after that
// positive control; nothing of it is readable or stored.
func TestFailedAppendIsNeverNotified(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	a := addUser(t, s, "Rollback")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("rollback-pc")
	in := d.listen(dev)
	d.commit(a.workspace, dev, "c1", itemJSON(-1, "f1", false, nil, 1))
	if n, _ := in.next(20 * time.Second); n.WorkspaceVersion != 1 || n.RequestID != "c1" {
		t.Fatalf("got %s v%d, want c1 v1", n.RequestID, n.WorkspaceVersion)
	}

	ghost := "ghost-" + uuid.NewString()
	failCommitsOf(t, s.dsn, ghost)
	r := d.call("commit", map[string]any{"requestId": ghost, "userId": a.id, "workspaceId": a.workspace, "deviceId": dev,
		"items": []any{itemJSON(-2, "ghost.txt", false, nil, 2)}}, callOpts{async: true})
	if r.Error == nil {
		t.Fatalf("a commit whose transaction failed was answered %+v, want an error", r)
	}

	// Positive control: the next commit takes the version the failed one would have had.
	d.commit(a.workspace, dev, "c2", itemJSON(-3, "f2", false, nil, 3))
	if n, _ := in.next(20 * time.Second); n.WorkspaceVersion != 2 || n.RequestID != "c2" {
		t.Fatalf("after the failed append got %s v%d, want c2 v2", n.RequestID, n.WorkspaceVersion)
	}
	in.none(2 * time.Second)
	p := d.changesSince(a.workspace, 0)
	if p.WorkspaceVersion != 2 || len(p.Items) != 2 {
		b, _ := json.Marshal(p)
		t.Fatalf("workspace after a failed and a good commit: %s", b)
	}
	for _, it := range p.Items {
		if *it.Filename == "ghost.txt" {
			t.Fatalf("the failed commit's item is readable: %+v", it)
		}
	}
	verifyHistory(t, s)
}

// crashBeforePublishEnv is cmd/syncd's fault-injection variable (cmd/syncd/fault.go).
const crashBeforePublishEnv = "SYNCD_TEST_CRASH_BEFORE_PUBLISH"
