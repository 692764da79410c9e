//go:build cluster

// Tests on the cluster of scripts/cluster: three RabbitMQ nodes and a PostgreSQL primary
// with a synchronous standby of their own (ports 5441-5442, 5681-5683, 15681-15683,
// 25681-25683, each plus CLUSTER_PORT_OFFSET, which the script reads from the environment
// the tests pass on). They start and stop that cluster, one test at a time, so they do not
// run with the parallel suite: .ci/run runs them afterwards with
// `go test -race -count=1 -tags cluster -run Cluster ./tests/`.

package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/client"
)

// clusterEnv is a running cluster: the script's data dir and its export lines.
type clusterEnv struct {
	dir string
	env map[string]string // SYNCD_AMQP_URL, SYNCD_PG_DSN, SYNC_PG_DSN, SYNC_RABBITMQ_API, SYNC_CLUSTER_DIR
}

// clusterScript runs scripts/cluster with args (bounded) and returns its stdout, its
// stderr and its error.
func clusterScript(dir string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/cluster", args...)
	cmd.Env = append(os.Environ(), "SYNC_CLUSTER_DIR="+dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// mustCluster runs scripts/cluster and fails the test when it fails.
func (c *clusterEnv) mustCluster(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := clusterScript(c.dir, args...)
	if err != nil {
		t.Fatalf("scripts/cluster %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

var reExport = regexp.MustCompile(`(?m)^export ([A-Z_]+)='([^']*)'$`)

// clusterUp starts the cluster for the test (a data dir of its own, fixed ports: one
// cluster at a time) and brings it down when the test ends, whatever happened.
func clusterUp(t *testing.T) *clusterEnv {
	t.Helper()
	initdb, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if _, err := os.Stat("/usr/lib/rabbitmq/bin/rabbitmq-server"); err != nil || len(initdb) == 0 {
		testenv.Missing(t, "RabbitMQ and PostgreSQL server binaries (Debian packages)", fmt.Errorf("rabbitmq-server: %v; initdb: %v", err, initdb))
	}
	// Not t.TempDir(): PostgreSQL runs as postgres when the tests run as root, and
	// must reach the directory.
	dir, err := os.MkdirTemp("", "syncservice-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &clusterEnv{dir: dir, env: map[string]string{}}
	t.Cleanup(func() {
		if out, errOut, err := clusterScript(dir, "down"); err != nil {
			t.Errorf("scripts/cluster down: %v\n%s%s", err, out, errOut)
		}
		os.RemoveAll(dir)
	})
	out := c.mustCluster(t, "up")
	for _, m := range reExport.FindAllStringSubmatch(out, -1) {
		c.env[m[1]] = m[2]
	}
	for _, k := range []string{"SYNCD_AMQP_URL", "SYNCD_PG_DSN", "SYNC_PG_DSN", "SYNC_RABBITMQ_API", "SYNC_CLUSTER_DIR"} {
		if c.env[k] == "" {
			t.Fatalf("scripts/cluster up printed no export of %s:\n%s", k, out)
		}
	}
	return c
}

// clusterNodeName is scripts/cluster's name of RabbitMQ node n under CLUSTER_PORT_OFFSET.
func clusterNodeName(n int) string {
	if o := testenv.ClusterPortOffset(); o != 0 {
		return fmt.Sprintf("rabbit-%d-o%d@localhost", n, o)
	}
	return fmt.Sprintf("rabbit-%d@localhost", n)
}

// amqpURLs are the cluster's AMQP URLs, node 1 first.
func (c *clusterEnv) amqpURLs() []string { return strings.Split(c.env["SYNCD_AMQP_URL"], ",") }

// processesUsing lists the live processes whose command line or environment names dir.
func processesUsing(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := fmt.Sscan(e.Name(), new(int)); err != nil || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(b, []byte(dir)) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return found
}

// statusLines returns scripts/cluster status's lines and whether it reported all up.
func (c *clusterEnv) status(t *testing.T) (string, bool) {
	t.Helper()
	out, errOut, err := clusterScript(c.dir, "status")
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("scripts/cluster status: %v\n%s", err, errOut)
		}
	}
	return out, err == nil
}

// The script itself: up brings three clustered nodes and a primary with a synchronous
// standby; a second up changes nothing; kill-broker and start-broker take one node out
// and back; each node serves AMQP; down leaves no process and no data.
func TestClusterScript(t *testing.T) {
	c := clusterUp(t)
	st, ok := c.status(t)
	if !ok || strings.Count(st, "cluster sees 3 running") != 3 || !strings.Contains(st, "role primary") || !strings.Contains(st, "role standby") {
		t.Fatalf("status after up:\n%s", st)
	}
	pids := regexp.MustCompile(`pid \d+`).FindAllString(st, -1)
	c.mustCluster(t, "up") // idempotent: nothing restarted
	st2, _ := c.status(t)
	if again := regexp.MustCompile(`pid \d+`).FindAllString(st2, -1); strings.Join(again, ",") != strings.Join(pids, ",") {
		t.Fatalf("a second up changed the processes: %v then %v", pids, again)
	}
	for _, u := range c.amqpURLs() {
		conn, err := amqp.Dial(u)
		if err != nil {
			t.Fatalf("dial %s: %v", u, err)
		}
		conn.Close()
	}
	var sync string
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := exec.Command("psql", "-X", "-At", "-h", "127.0.0.1", "-p", fmt.Sprint(5441+testenv.ClusterPortOffset()), "-U", "postgres", "-d", "postgres",
			"-c", "SELECT sync_state FROM pg_stat_replication").CombinedOutput()
		sync = strings.TrimSpace(string(out))
		if err != nil || sync != "sync" {
			return fmt.Errorf("replication: %q %v", sync, err)
		}
		return nil
	})

	c.mustCluster(t, "kill-broker", "2")
	st, ok = c.status(t)
	if ok || !strings.Contains(st, clusterNodeName(2)+"  down") || strings.Count(st, "cluster sees 2 running") != 2 {
		t.Fatalf("status after kill-broker 2 (want node 2 down, a non-zero exit):\n%s", st)
	}
	c.mustCluster(t, "kill-broker", "2") // idempotent
	c.mustCluster(t, "start-broker", "2")
	testenv.Eventually(t, 60*time.Second, func() error {
		st, ok = c.status(t)
		if !ok || strings.Count(st, "cluster sees 3 running") != 3 {
			return fmt.Errorf("status after start-broker 2:\n%s", st)
		}
		return nil
	})

	if out, errOut, err := clusterScript(c.dir, "down"); err != nil {
		t.Fatalf("down: %v\n%s%s", err, out, errOut)
	}
	if left := processesUsing(c.dir); len(left) > 0 {
		t.Fatalf("processes left after down:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(filepath.Join(c.dir, "rabbit-1")); !os.IsNotExist(err) {
		t.Fatalf("data left after down: %v", err)
	}
}

// readyz returns the process's /readyz status and body.
func (p *proc) readyz() (int, string, error) {
	if p.http == "" {
		addr, err := p.logged(reHTTPAddr)
		if err != nil {
			return 0, "", err
		}
		p.http = addr
	}
	resp, err := http.Get("http://" + p.http + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// Issue 15 item 4: syncd started while its database and its broker are both down does
// not exit: it retries (logged), /readyz says what it waits for, and once the cluster's
// PostgreSQL and then its RabbitMQ node are started it becomes ready and serves a device.
func TestClusterStartupWhileDependenciesDown(t *testing.T) {
	c := clusterUp(t)
	c.mustCluster(t, "stop-db")
	c.mustCluster(t, "kill-broker", "1")
	node1 := c.amqpURLs()[0]
	s := services{dsn: c.env["SYNCD_PG_DSN"], amqp: node1}
	p := launchSyncd(t, s, "-quorum-queues", "true")
	testenv.Eventually(t, 60*time.Second, func() error {
		code, body, err := p.readyz()
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the database") {
			return fmt.Errorf("readyz %d %q, want 503 waiting for the database", code, body)
		}
		if n := p.countLog("database unavailable; retrying"); n < 2 {
			return fmt.Errorf("%d retries logged", n)
		}
		return nil
	})
	c.mustCluster(t, "start-db")
	testenv.Eventually(t, 90*time.Second, func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("syncd exited: %v", p.cmd.ProcessState)
		default:
		}
		code, body, err := p.readyz()
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "not consuming requests") {
			return fmt.Errorf("readyz %d %q, want 503 not consuming (the broker is down)", code, body)
		}
		return p.waitLog("broker unreachable; retrying")
	})
	c.mustCluster(t, "start-broker", "1")
	p.waitReady(t, 90*time.Second)
	a := c.addUser(t, "Sam")
	u, err := url.Parse(node1)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(a.id.String(), a.password)
	d := dialDevice(t, u.String(), a.id, "sam-pc")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	temp := int64(-1)
	n, err := d.c.CommitAndWait(ctx, &client.CommitRequest{WorkspaceID: a.workspace, Items: []domain.ItemMetadata{{TempID: &temp,
		Version: 1, Status: domain.StatusNew, ModifiedAt: time.Now().UTC(), Checksum: 1, Chunks: []string{"c"}, Size: 3,
		Filename: "first.txt", Mimetype: "text/plain"}}})
	if err != nil || n.WorkspaceVersion != 1 || len(n.Items) != 1 || !n.Items[0].CommitSucceed {
		t.Fatalf("first commit after start-up: %+v, %v", n, err)
	}
}

// countLog counts the log lines containing s so far.
func (p *proc) countLog(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
