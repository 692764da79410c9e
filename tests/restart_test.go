//go:build restart

// Restarts of the real services. They stop the broker or the database for every client
// on the machine, so they do not run with the parallel suite: .ci/run runs them alone
// afterwards with `go test -race -tags restart -run Restart ./tests/`.

package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := execCommand(name, args...); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// RabbitMQ itself restarts mid-stream (stop_app/start_app: every connection drops and
// non-durable objects vanish: the multi# exchanges and with them every binding of the
// durable device queues). syncd re-declares its topology, its binder binds every device
// queue again before the notifier publishes, and serves on; every commit acknowledged
// to a device is stored once and notified at least once through the durable queue of
// every member's device (the owner's and another member's), and to no one else.
func TestBrokerRestart(t *testing.T) {
	s := newServices(t)
	p := startSyncd(t, s)
	a := addUser(t, s, "Rita")
	bob := addUser(t, s, "Bob")
	shared := sharedWorkspace(t, s, a, "Team", bob)
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("rita-pc")
	bd := dialRaw(t, userURL(t, s, bob), bob.id)
	bobDev := bd.register("bob-pc")
	const total = 20
	for i := range total {
		if i == total/2 {
			run(t, "rabbitmqctl", "-q", "stop_app")
			run(t, "rabbitmqctl", "-q", "start_app")
			run(t, "rabbitmqctl", "-q", "await_startup")
		}
		d = commitUntilRecorded(t, s, a, d, a.workspace, dev, fmt.Sprintf("r%d", i), itemJSON(int64(-1-i), fmt.Sprintf("r%d", i), false, nil, 1))
		d = commitUntilRecorded(t, s, a, d, shared, dev, fmt.Sprintf("s%d", i), itemJSON(int64(-1001-i), fmt.Sprintf("s%d", i), false, nil, 1))
	}
	d = dialRawRetry(t, userURL(t, s, a), a.id)
	waitVersion(t, d, a.workspace, total)
	waitVersion(t, d, shared, total)
	collectPerWorkspace(t, d.listen(dev), map[string]int64{a.workspace.String(): total, shared.String(): total}, 60*time.Second)
	bd = dialRawRetry(t, userURL(t, s, bob), bob.id)
	collectPerWorkspace(t, bd.listen(bobDev), map[string]int64{shared.String(): total}, 60*time.Second)
	// The binder restored the two device queues' bindings: once on the fresh vhost
	// (nothing to restore), once after the restart.
	restores := p.logLines("device queue bindings restored")
	if len(restores) < 2 || !strings.Contains(restores[len(restores)-1], "devices=2") {
		t.Fatalf("binder restores logged: %q, want a second one of 2 devices", restores)
	}
	for _, l := range append(restores, p.logLines("topology marker present")...) {
		t.Log(l)
	}
}

// logLines returns the log lines of p that contain s.
func (p *proc) logLines(s string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.logs {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// collectPerWorkspace drains an inbox until it has seen every workspace version
// 1..want[ws] of every workspace of want at least once; an event of another workspace
// fails the test.
func collectPerWorkspace(t *testing.T, in *inbox, want map[string]int64, timeout time.Duration) {
	t.Helper()
	seen := map[string]map[int64]bool{}
	missing := func() int64 {
		var n int64
		for ws, w := range want {
			n += w - int64(len(seen[ws]))
		}
		return n
	}
	deadline := time.Now().Add(timeout)
	for missing() > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("%d notifications missing after %v: seen %v", missing(), timeout, seen)
		}
		n, _ := in.next(left)
		w, ok := want[n.WorkspaceID]
		if !ok {
			t.Fatalf("notification of workspace %s, not one of %v", n.WorkspaceID, want)
		}
		if n.WorkspaceVersion < 1 || n.WorkspaceVersion > w {
			t.Fatalf("workspace %s: version %d out of 1..%d", n.WorkspaceID, n.WorkspaceVersion, w)
		}
		if seen[n.WorkspaceID] == nil {
			seen[n.WorkspaceID] = map[int64]bool{}
		}
		seen[n.WorkspaceID][n.WorkspaceVersion] = true
	}
}

// PostgreSQL restarts mid-stream; syncd keeps its process and recovers.
func TestDatabaseRestart(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	a := addUser(t, s, "Sam")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("sam-pc")
	cluster, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(cluster) == 0 {
		t.Fatalf("no PostgreSQL cluster found: %v", err)
	}
	const total = 20
	for i := range total {
		if i == total/2 {
			run(t, "pg_ctlcluster", "--skip-systemctl-redirect", cluster[0].Name(), "main", "restart")
		}
		d = commitUntilRecorded(t, s, a, d, a.workspace, dev, fmt.Sprintf("d%d", i), itemJSON(int64(-1-i), fmt.Sprintf("d%d", i), false, nil, 1))
	}
	waitVersion(t, d, a.workspace, total)
	d.listen(dev).collectVersions(t, total, 60*time.Second)
}
