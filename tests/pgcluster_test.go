//go:build cluster

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// Ports of the PostgreSQL pair these tests make (testenv.PGPair): 5451/5452 plus
// CLUSTER_PORT_OFFSET; scripts/cluster uses 5441/5442 plus the offset, the machine's
// server 5432.
var pairPrimaryPort, pairStandbyPort = testenv.PGPairPorts()

// acks records the commits devices saw acknowledged, by workspace, with the time of each.
type acks struct {
	mu    sync.Mutex
	names map[uuid.UUID][]string
	times []time.Time
	errs  []error
}

func (a *acks) add(ws uuid.UUID, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.names[ws] = append(a.names[ws], name)
	a.times = append(a.times, time.Now())
}

func (a *acks) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

// since counts the acknowledgements after t.
func (a *acks) since(t time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, at := range a.times {
		if at.After(t) {
			n++
		}
	}
	return n
}

// stall is the longest time without an acknowledgement from t on: the gap between two
// consecutive acknowledgements (or t and the first) ending after t.
func (a *acks) stall(t time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	ts := slices.Clone(a.times)
	slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
	var longest time.Duration
	prev := t
	for _, at := range ts {
		if at.After(t) {
			longest = max(longest, at.Sub(prev))
		}
		prev = at
	}
	return longest
}

// commitLoad commits a new file after another from one device until stop is closed,
// each retried (same requestId) until acknowledged; an answer other than Busy or
// Internal, or a commit never acknowledged within a minute, is an error.
func commitLoad(d *rawDevice, ws, dev uuid.UUID, prefix string, stop <-chan struct{}, a *acks) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		name := fmt.Sprintf("%s-%d", prefix, n)
		params := map[string]any{"requestId": name, "userId": d.user, "workspaceId": ws, "deviceId": dev,
			"items": []any{itemJSON(int64(-1-n), name, false, nil, int64(n))}}
		deadline := time.Now().Add(time.Minute)
		for {
			r, err := d.tryCall("commit", params, false, 5*time.Second)
			if err == nil && r.Error == nil {
				a.add(ws, name)
				break
			}
			if err == nil && r.Error.Type != wire.CodeBusy && r.Error.Type != wire.CodeInternal {
				a.fail(fmt.Errorf("commit %s refused: %+v", name, r.Error))
				return
			}
			if time.Now().After(deadline) {
				a.fail(fmt.Errorf("commit %s not acknowledged within a minute (last: %v %+v)", name, err, r))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A commit acknowledged to a device survives a failover of the database: under load
// from several devices the primary is SIGKILLed and the synchronous standby promoted;
// syncd, given both hosts with target_session_attrs=read-write, finds the new primary
// by itself, commits flow again, every acknowledged commit is in getChanges afterwards
// (read through -pg-read, which named the standby: now the primary), and the read models
// still equal a rebuild of the history.
func TestPGFailoverLosesNoAcknowledgedCommit(t *testing.T) {
	pair := testenv.StartPGPair(t, filepath.Join(testenv.PGPairRoot(), "failover"), pairPrimaryPort, pairStandbyPort)
	s := services{dsn: pair.MultiHostDSN("syncservice"), amqp: testenv.AMQPURL(t)}
	// -pg-read names the standby: once promoted, it is read as the primary it became.
	p := startSyncd(t, s, "-pg-read", pair.Standby.DSN("syncservice"))
	type user struct {
		a   account
		d   *rawDevice
		dev uuid.UUID
	}
	var users []user
	for i := range 3 {
		a := addUser(t, s, fmt.Sprintf("Fail%d", i))
		d := dialRaw(t, userURL(t, s, a), a.id)
		users = append(users, user{a, d, d.register(fmt.Sprintf("fail%d-pc", i))})
	}
	got := &acks{names: map[uuid.UUID][]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() { commitLoad(u.d, u.a.workspace, u.dev, fmt.Sprintf("u%d", i), stop, got) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	waitAcks := func(after time.Time, n int, bound time.Duration) {
		t.Helper()
		testenv.Eventually(t, bound, func() error {
			if err := errors.Join(got.errs...); err != nil {
				t.Fatal(err)
			}
			if c := got.since(after); c < n {
				return fmt.Errorf("%d commits acknowledged, want %d", c, n)
			}
			return nil
		})
	}
	waitAcks(time.Time{}, 30, 60*time.Second)
	// The standby stops receiving WAL before the primary dies: with synchronous
	// replication the commits written meanwhile wait and are not acknowledged; were
	// they acknowledged (asynchronous replication), they would be lost below.
	pair.StopWALSender()
	cut := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := got.since(cut); n >= 5 {
			return nil // acknowledged while the standby received nothing: the check below fails
		}
		if n, err := pair.SyncRepWaiting(); err != nil || n == 0 {
			return fmt.Errorf("no commit waits for the standby yet (%d, %v)", n, err)
		}
		return nil
	})
	killed := time.Now()
	pair.KillPrimary()
	dead := time.Now()
	pair.Promote()
	promoted := time.Now()
	waitAcks(promoted, 30, 90*time.Second)
	stopLoad()
	if err := errors.Join(got.errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover: %d commits acknowledged while the standby received nothing; kill took %v, promote %v; commits stalled %v (longest time without an acknowledgement from the kill on); %d acknowledged",
		got.since(cut)-got.since(killed), dead.Sub(killed).Round(time.Millisecond), promoted.Sub(dead).Round(time.Millisecond), got.stall(killed).Round(time.Millisecond), got.since(time.Time{}))

	for _, u := range users {
		want := got.names[u.a.workspace]
		testenv.Eventually(t, 30*time.Second, func() error {
			r, err := u.d.tryCall("getChanges", map[string]any{"requestId": "gc", "userId": u.a.id, "workspaceId": u.a.workspace}, false, 10*time.Second)
			if err != nil {
				return err
			}
			if r.Error != nil {
				return fmt.Errorf("getChanges: %+v", r.Error)
			}
			var items []wire.ItemMetadata
			b, _ := json.Marshal(r.Result)
			if err := json.Unmarshal(b, &items); err != nil {
				return err
			}
			have := map[string]bool{}
			for _, it := range items {
				have[*it.Filename] = true
			}
			for _, name := range want {
				if !have[name] {
					return fmt.Errorf("acknowledged commit %s is not in getChanges of %s (%d items)", name, u.a.workspace, len(items))
				}
			}
			return nil
		})
	}
	if replicaReads(t, p, "primary") == 0 {
		t.Fatal("no read counted as served by the promoted standby (where=primary)")
	}
	// Every device was notified of every workspace version, those around the failover too.
	for _, u := range users {
		v := u.d.changesSince(u.a.workspace, 0).WorkspaceVersion
		u.d.listen(u.dev).collectVersions(t, v, 60*time.Second)
	}
	verifyHistory(t, s)
}

// replicaReads counts syncd's routed reads by where they were served.
func replicaReads(t *testing.T, p *proc, where string) float64 {
	return metric(t, p, `syncd_replica_reads_total{where="`+where+`"}`)
}

// PROTOCOL.md §5 with reads from a standby (-pg-read): a read reflects every commit
// acknowledged (and so notified) before it arrived. The standby serves reads once it has
// caught up; with its replay paused, commits still complete (synchronous replication
// waits for the standby's flush, not its replay), and getChanges, getChangesSince,
// getItemVersions and getWorkspaces right after each commit still show it: they wait for
// the standby, then read the primary. Replay resumed, the standby serves them again;
// once it died, the primary serves them (the dead standby also leaves synchronous
// replication: an operator's first step, or commits would wait for it).
func TestReadReplicaNeverStale(t *testing.T) {
	pair := testenv.StartPGPair(t, filepath.Join(testenv.PGPairRoot(), "replica"), pairPrimaryPort, pairStandbyPort)
	s := services{dsn: pair.Primary.DSN("syncservice"), amqp: testenv.AMQPURL(t)}
	p := startSyncd(t, s, "-pg-read", pair.Standby.DSN("syncservice"), "-pg-read-max-wait", "100ms")
	a := addUser(t, s, "Rita")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("rita-pc")
	commit := func(n int) {
		t.Helper()
		name := fmt.Sprintf("r%d", n)
		d.ok("commit", map[string]any{"requestId": name, "userId": a.id, "workspaceId": a.workspace, "deviceId": dev,
			"items": []any{itemJSON(int64(-1-n), name, false, nil, int64(n))}})
	}
	// Every read right after commit n must show it.
	readsShow := func(n int) {
		t.Helper()
		name := fmt.Sprintf("r%d", n)
		var id *int64
		for _, it := range d.changes(a.workspace) {
			if *it.Filename == name {
				id = it.ID
			}
		}
		if id == nil {
			t.Fatalf("getChanges right after commit %s does not show it", name)
		}
		if p := d.changesSince(a.workspace, 0); p.WorkspaceVersion != int64(n+1) || len(p.Items) != n+1 {
			t.Fatalf("getChangesSince right after commit %s: version %d with %d items, want %d", name, p.WorkspaceVersion, len(p.Items), n+1)
		}
		var vs []wire.ItemMetadata
		mustJSON(t, d.ok("getItemVersions", map[string]any{"requestId": "iv", "userId": a.id, "workspaceId": a.workspace, "itemId": *id}), &vs)
		if len(vs) != 1 {
			t.Fatalf("getItemVersions of %s right after its commit: %d versions", name, len(vs))
		}
		var wss []wire.Workspace
		mustJSON(t, d.ok("getWorkspaces", map[string]any{"requestId": "w", "userId": a.id}), &wss)
		if len(wss) != 1 || wss[0].LatestRevision != int64(n+1) {
			t.Fatalf("getWorkspaces right after commit %s: %+v, want latestRevision %d", name, wss, n+1)
		}
	}
	commit(0)
	readsShow(0)
	testenv.Eventually(t, 30*time.Second, func() error {
		d.changes(a.workspace)
		if replicaReads(t, p, "standby") == 0 {
			return errors.New("no read served by the standby yet")
		}
		return nil
	})

	if err := pair.PauseReplay(); err != nil {
		t.Fatal(err)
	}
	fellBack := replicaReads(t, p, "fallback")
	for n := 1; n <= 3; n++ {
		commit(n)
		readsShow(n)
	}
	if f := replicaReads(t, p, "fallback"); f < fellBack+4*3 {
		t.Fatalf("%v reads fell back to the primary while the standby's replay was paused, want at least %v", f-fellBack, 4*3)
	}
	if lag, waited := metric(t, p, "syncd_replica_lag_bytes"), metric(t, p, "syncd_replica_wait_seconds_total"); lag <= 0 || waited < 12*0.1 {
		t.Fatalf("replay paused: lag %v bytes, reads waited %vs in all; want a lag, and 12 reads waiting out -pg-read-max-wait", lag, waited)
	}

	if err := pair.ResumeReplay(); err != nil {
		t.Fatal(err)
	}
	served := replicaReads(t, p, "standby")
	testenv.Eventually(t, 30*time.Second, func() error {
		readsShow(3)
		if replicaReads(t, p, "standby") < served+4 {
			return errors.New("the standby serves no reads since replay resumed")
		}
		return nil
	})

	// The standby dies: reads go on, from the primary.
	pair.Kill(pair.Standby)
	if err := pair.Exec(pair.Primary, `ALTER SYSTEM SET synchronous_standby_names = ''`); err != nil {
		t.Fatal(err)
	}
	if err := pair.Exec(pair.Primary, `SELECT pg_reload_conf()`); err != nil {
		t.Fatal(err)
	}
	fellBack = replicaReads(t, p, "fallback")
	commit(4)
	readsShow(4)
	if f := replicaReads(t, p, "fallback"); f < fellBack+4 {
		t.Fatalf("%v reads fell back to the primary with the standby dead, want at least 4", f-fellBack)
	}
}
