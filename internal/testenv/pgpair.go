//go:build cluster

package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGPair is a PostgreSQL primary with one streaming standby under synchronous
// replication, both clusters of their own (initdb and pg_basebackup of the machine's
// PostgreSQL binaries) in a directory of their own: the machine's PostgreSQL is never
// touched. Tests of the `cluster` build tag use it to fail the database over and to read
// from the standby. Start it with StartPGPair; it is stopped (by PID) and removed when
// the test ends.
type PGPair struct {
	t       testing.TB
	Dir     string
	Primary PGNode
	Standby PGNode
	bin     string
	cred    *syscall.Credential // the postgres user's when run as root (initdb refuses root)
}

// PGNode is one PostgreSQL server of a PGPair.
type PGNode struct {
	Name string // "primary", "standby"
	Port int
	Data string
	Log  string
}

// StandbyName is the standby's application_name, the one synchronous_standby_names names.
const StandbyName = "pgread_standby"

// PGPairBin is where the PostgreSQL binaries are looked for (TEST_PG_BIN overrides).
func PGPairBin() string { return env("TEST_PG_BIN", "/usr/lib/postgresql/15/bin") }

// StartPGPair creates and starts a primary on primaryPort and a synchronous standby on
// standbyPort under dir (removed first, and at the end). It fails the test (under CI,
// or skips otherwise) when the binaries are missing, and fails it when a port is taken.
func StartPGPair(t testing.TB, dir string, primaryPort, standbyPort int) *PGPair {
	t.Helper()
	p := &PGPair{t: t, Dir: dir, bin: PGPairBin(),
		Primary: PGNode{Name: "primary", Port: primaryPort, Data: filepath.Join(dir, "primary"), Log: filepath.Join(dir, "primary.log")},
		Standby: PGNode{Name: "standby", Port: standbyPort, Data: filepath.Join(dir, "standby"), Log: filepath.Join(dir, "standby.log")}}
	if _, err := os.Stat(filepath.Join(p.bin, "initdb")); err != nil {
		Missing(t, "PostgreSQL binaries (initdb, pg_basebackup, pg_ctl)", err)
	}
	for _, port := range []int{primaryPort, standbyPort} {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			t.Fatalf("pg pair: port %d is taken (%v): another test run, or a pair left behind (see %s)", port, err, dir)
		} else {
			l.Close()
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pg pair: running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	t.Cleanup(p.stopAll)
	if err := p.setUp(); err != nil {
		t.Fatalf("pg pair: %v\n%s", err, p.logs())
	}
	return p
}

func (p *PGPair) setUp() error {
	if err := os.RemoveAll(p.Dir); err != nil {
		return err
	}
	// The parents must let the postgres user through when the pair runs as root.
	if err := os.MkdirAll(filepath.Dir(p.Dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(p.Dir, 0o700); err != nil {
		return err
	}
	if p.cred != nil {
		if err := os.Chown(p.Dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return err
		}
	}
	if err := p.run("initdb", "-D", p.Primary.Data, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		return err
	}
	conf := strings.Join([]string{
		fmt.Sprintf("port = %d", p.Primary.Port),
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", p.Dir),
		"wal_level = replica", "max_wal_senders = 5", "wal_keep_size = '256MB'",
		"hot_standby = on", "hot_standby_feedback = on",
		"synchronous_commit = on", fmt.Sprintf("synchronous_standby_names = '%s'", StandbyName),
		"shared_buffers = '64MB'", "max_connections = 200",
		"wal_receiver_status_interval = '1s'", "wal_sender_timeout = '10s'", "wal_receiver_timeout = '10s'",
	}, "\n") + "\n"
	if err := p.appendFile(filepath.Join(p.Primary.Data, "postgresql.conf"), conf); err != nil {
		return err
	}
	if err := p.appendFile(filepath.Join(p.Primary.Data, "pg_hba.conf"), "host replication all 127.0.0.1/32 trust\n"); err != nil {
		return err
	}
	if err := p.start(p.Primary); err != nil {
		return err
	}
	if err := p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Primary.Port), "-U", "postgres",
		"-D", p.Standby.Data, "-X", "stream", "--checkpoint=fast", "-R"); err != nil {
		return err
	}
	// The standby's own settings: its port, its name in synchronous_standby_names, and
	// none of its own (promoted with no standby behind it, it must not wait for one).
	auto := strings.Join([]string{
		fmt.Sprintf("port = %d", p.Standby.Port),
		fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'", p.Primary.Port, StandbyName),
		"synchronous_standby_names = ''",
	}, "\n") + "\n"
	if err := p.appendFile(filepath.Join(p.Standby.Data, "postgresql.auto.conf"), auto); err != nil {
		return err
	}
	if err := p.start(p.Standby); err != nil {
		return err
	}
	return p.waitSync(60 * time.Second)
}

// DSN is the DSN of database db on one node.
func (n PGNode) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", n.Port, db)
}

// MultiHostDSN names both nodes, primary first, with target_session_attrs=read-write:
// after a failover it finds the promoted standby.
func (p *PGPair) MultiHostDSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		p.Primary.Port, p.Standby.Port, db)
}

// waitSync waits until the standby streams from the primary as its synchronous standby.
func (p *PGPair) waitSync(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	var last error
	for time.Now().Before(deadline) {
		var state string
		last = p.queryRow(p.Primary, `SELECT sync_state FROM pg_stat_replication WHERE application_name = $1`, []any{StandbyName}, &state)
		if last == nil && state == "sync" {
			return nil
		}
		if last == nil {
			last = fmt.Errorf("standby is %q, not sync", state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("standby not synchronous after %v: %w", bound, last)
}

// Exec runs one statement on a node's postgres database.
func (p *PGPair) Exec(n PGNode, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql, args...)
	return err
}

func (p *PGPair) queryRow(n PGNode, sql string, args []any, dst ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.QueryRow(ctx, sql, args...).Scan(dst...)
}

// PID is the postmaster's PID of a running node (0 when it is not running).
func (p *PGPair) PID(n PGNode) int {
	b, err := os.ReadFile(filepath.Join(n.Data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// KillPrimary ends the primary as a dying host would: the postmaster and every one of its
// processes are stopped, then SIGKILLed, so none of them writes or sends anything more.
func (p *PGPair) KillPrimary() { p.Kill(p.Primary) }

// Kill ends a node as a dying host would (see KillPrimary).
func (p *PGPair) Kill(n PGNode) {
	p.t.Helper()
	pid := p.PID(n)
	if pid == 0 {
		p.t.Fatalf("pg pair: the %s is not running", n.Name)
	}
	group := append([]int{pid}, children(pid)...)
	for _, c := range group {
		_ = syscall.Kill(c, syscall.SIGSTOP)
	}
	for _, c := range group {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	waitGone(group, 10*time.Second)
}

// Promote promotes the standby and returns once it accepts writes (pg_is_in_recovery()
// false, polled: pg_ctl's own wait reads the control file and was seen to return
// seconds late).
func (p *PGPair) Promote() {
	p.t.Helper()
	if err := p.run("pg_ctl", "-D", p.Standby.Data, "-W", "promote"); err != nil {
		p.t.Fatalf("pg pair: promote: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var recovering bool
		err := p.queryRow(p.Standby, `SELECT pg_is_in_recovery()`, nil, &recovering)
		if err == nil && !recovering {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pg pair: standby not promoted after 60s (%v)\n%s", err, p.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Failover kills the primary and promotes the standby; it returns when the new primary
// accepts writes.
func (p *PGPair) Failover() {
	p.t.Helper()
	p.KillPrimary()
	p.Promote()
}

// StopWALSender freezes (SIGSTOP) the primary's WAL sender to the standby, as a cut
// network would: the primary writes WAL the standby never receives. Synchronous commits
// then wait (SyncRepWaiting counts them); asynchronous ones would be acknowledged and
// lost to a failover. Killing the primary ends the frozen process too.
func (p *PGPair) StopWALSender() {
	p.t.Helper()
	var pid int
	if err := p.queryRow(p.Primary, `SELECT pid FROM pg_stat_replication WHERE application_name = $1`, []any{StandbyName}, &pid); err != nil {
		p.t.Fatalf("pg pair: find the WAL sender: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		p.t.Fatalf("pg pair: stop the WAL sender %d: %v", pid, err)
	}
}

// SyncRepWaiting counts the primary's sessions waiting for the standby to confirm a commit.
func (p *PGPair) SyncRepWaiting() (int, error) {
	var n int
	err := p.queryRow(p.Primary, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'`, nil, &n)
	return n, err
}

// PauseReplay stops the standby's WAL replay (WAL still arrives and is flushed, so
// synchronous commits still complete); ResumeReplay resumes it.
func (p *PGPair) PauseReplay() error { return p.Exec(p.Standby, `SELECT pg_wal_replay_pause()`) }

// ResumeReplay resumes the standby's WAL replay.
func (p *PGPair) ResumeReplay() error { return p.Exec(p.Standby, `SELECT pg_wal_replay_resume()`) }

func (p *PGPair) start(n PGNode) error {
	if err := p.run("pg_ctl", "-D", n.Data, "-l", n.Log, "-w", "-t", "60", "-o", "-c logging_collector=off", "start"); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	return nil
}

// stopAll stops both nodes by the PIDs in their postmaster.pid (fast shutdown, then
// SIGKILL), and removes the directory unless the test failed (its logs stay for a look).
func (p *PGPair) stopAll() {
	for _, n := range []PGNode{p.Standby, p.Primary} {
		pid := p.PID(n)
		if pid == 0 {
			continue
		}
		group := append([]int{pid}, children(pid)...)
		_ = syscall.Kill(pid, syscall.SIGINT) // fast shutdown
		if !waitGone([]int{pid}, 30*time.Second) {
			for _, c := range group {
				_ = syscall.Kill(c, syscall.SIGKILL)
			}
			waitGone(group, 10*time.Second)
		}
	}
	if p.t.Failed() {
		p.t.Logf("pg pair logs kept under %s\n%s", p.Dir, p.logs())
		return
	}
	_ = os.RemoveAll(p.Dir)
}

// logs returns the tail of both nodes' logs.
func (p *PGPair) logs() string {
	var b strings.Builder
	for _, n := range []PGNode{p.Primary, p.Standby} {
		data, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s log (%s) ---\n%s\n", n.Name, n.Log, data)
	}
	return b.String()
}

func (p *PGPair) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "LC_ALL=C.UTF-8")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (p *PGPair) appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

// children lists the PIDs whose parent is pid (from /proc).
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// waitGone waits until none of pids exists (a zombie counts as gone), up to bound.
func waitGone(pids []int, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		alive := false
		for _, pid := range pids {
			if running(pid) {
				alive = true
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// PGPairRoot is the directory under which pairs are made (TEST_PG_PAIR_DIR, default
// /tmp/pgread, or /tmp/pgread-oN under a ClusterPortOffset N other than 0).
func PGPairRoot() string {
	def := "/tmp/pgread"
	if o := ClusterPortOffset(); o != 0 {
		def = fmt.Sprintf("%s-o%d", def, o)
	}
	return env("TEST_PG_PAIR_DIR", def)
}

// ClusterPortOffset is CLUSTER_PORT_OFFSET (default 0), the number scripts/cluster adds to
// each of its ports; the tests of the cluster tag add it to the ports of their PostgreSQL
// pairs (PGPairPorts) too, so that two runs of them can share one machine. A value that
// is not a number from 0 to 9999 panics: a run on the wrong ports would disturb another.
func ClusterPortOffset() int {
	s := os.Getenv("CLUSTER_PORT_OFFSET")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 9999 {
		panic(fmt.Sprintf("CLUSTER_PORT_OFFSET=%q is not a number from 0 to 9999", s))
	}
	return n
}

// PGPairPorts are the ports of a PGPair of the tests: 5451 and 5452 plus
// ClusterPortOffset (scripts/cluster's own are 5441-5442 plus the offset).
func PGPairPorts() (primary, standby int) {
	o := ClusterPortOffset()
	return 5451 + o, 5452 + o
}
