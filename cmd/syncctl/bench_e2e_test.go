package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// One short run of two scenarios against a real syncd (built here, on the test's own
// database and vhost): the server's commits and reads all succeed, the workspace is
// filled in commits the server takes, the baselines (both floors) and
// the ratios are reported, the server's metrics and the machine's processes are read, the plot is written, and the
// scratch table and the floor's vhost are gone afterwards.
func TestBenchAgainstSyncd(t *testing.T) {
	dsn, amqpURL := testenv.PostgresDSN(t), testenv.AMQPURL(t)
	vhost := strings.TrimPrefix(mustParseURL(t, amqpURL).Path, "/")
	addr := startTestSyncd(t, dsn, amqpURL)
	floorsBefore := floorVhosts(t)

	var out bytes.Buffer
	plotFile := filepath.Join(t.TempDir(), "bench.png")
	rootCmd.SetOut(&out)
	defer rootCmd.SetOut(nil)
	rootCmd.SetArgs([]string{"--pg", dsn, "bench", "--amqp", amqpURL, "--vhost", vhost, "--rabbitmq-api", testenv.ManagementURL(),
		"--scenario", "sequential,getchanges", "--commits", "15", "--items", "30", "--fill-batch", "20", "--reads", "3",
		"--metrics-url", "http://" + addr + "/metrics", "--json", "--plot", plotFile, "--local-cpu"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := executeFresh(ctx); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out.String())
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("scenarios %+v", rep.Scenarios)
	}
	seq, gc := rep.Scenarios[0], rep.Scenarios[1]
	if seq.Name != "sequential" || seq.Server.Ops != 15 || seq.Server.Failed != 0 || seq.Server.P50Ms <= 0 {
		t.Errorf("sequential server: %+v", seq.Server)
	}
	if seq.Floor == nil || seq.Floor.Ops != 15 || seq.Floor.Failed != 0 || seq.Insert == nil || seq.Insert.Ops != 15 || seq.Insert.Failed != 0 ||
		seq.GuaranteedFloor == nil || seq.GuaranteedFloor.Ops != 15 || seq.GuaranteedFloor.Failed != 0 {
		t.Errorf("sequential baselines: floor %+v, guaranteed floor %+v, insert %+v", seq.Floor, seq.GuaranteedFloor, seq.Insert)
	}
	if seq.Ratios.ThroughputVsFloor == nil || seq.Ratios.ThroughputVsGuaranteed == nil || seq.Ratios.ThroughputVsInsert == nil || seq.ServerCPUMsPerOp == nil {
		t.Errorf("sequential ratios %+v, CPU per commit %v", seq.Ratios, seq.ServerCPUMsPerOp)
	}
	// Every group, in order; /proc counts CPU in 10 ms ticks, so over 15 commits one
	// group may show none (PostgreSQL did once in CI), but not all four together.
	var total float64
	for _, g := range seq.LocalCPU {
		total += g.MsPerOp
	}
	if cpu := seq.LocalCPU; len(cpu) != len(procGroups) || cpu[0].Process != groupPostgres || total <= 0 {
		t.Errorf("sequential --local-cpu: %+v (want every group, and CPU above 0 in all)", cpu)
	}
	if gc.Name != "getchanges" || gc.Items != 30 || gc.FillBatch != 10 || gc.Error != "" || gc.Server.Ops != 3 || gc.Server.Failed != 0 || gc.Floor == nil || gc.Floor.Ops != 3 || gc.ServerRSSBytes == nil {
		t.Errorf("getchanges: %+v", gc)
	}
	if st, err := os.Stat(plotFile); err != nil || st.Size() == 0 {
		t.Errorf("plot: %v", err)
	}
	var tables int
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_insert_%'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("scratch tables left: %d, %v", tables, err)
	}
	for v := range floorVhosts(t) {
		if !floorsBefore[v] {
			t.Errorf("the floor's vhost %s was left", v)
		}
	}
}

// executeFresh runs rootCmd with ctx and a new bench command: cobra keeps a
// command's flag values from one execution to the next, and hands the root's context
// to a subcommand only when the subcommand has none, so the bench command of an
// earlier test would keep its flags (say --plot) and its cancelled context.
func executeFresh(ctx context.Context) error {
	for _, c := range rootCmd.Commands() {
		if c.Name() == "bench" {
			rootCmd.RemoveCommand(c)
		}
	}
	rootCmd.AddCommand(benchCmd())
	return rootCmd.ExecuteContext(ctx)
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// floorVhosts lists the broker's vhosts named like the floor's.
func floorVhosts(t *testing.T) map[string]bool {
	t.Helper()
	var vs []struct {
		Name string `json:"name"`
	}
	if err := testenv.Management(http.MethodGet, "/api/vhosts", "", &vs); err != nil {
		testenv.Missing(t, "RabbitMQ management API", err)
	}
	out := map[string]bool{}
	for _, v := range vs {
		if strings.HasPrefix(v.Name, "bench-floor-") {
			out[v.Name] = true
		}
	}
	return out
}

var reListening = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// startTestSyncd builds syncd, starts it on the given database and vhost with an HTTP
// listener on a free port, waits until it is ready and returns that address. It is
// stopped when the test ends.
func startTestSyncd(t *testing.T, dsn, amqpURL string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "syncd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stacksync-es/syncservice/cmd/syncd").CombinedOutput(); err != nil {
		t.Fatalf("build syncd: %v\n%s", err, out)
	}
	// -max-commit-items 16: the bench's fill commits of 20 items are refused, and it
	// halves them.
	cmd := exec.Command(bin, "-pg", dsn, "-amqp", amqpURL, "-http", "127.0.0.1:0", "-log-level", "info", "-shutdown-grace", "5s",
		"-max-commit-items", "16")
	cmd.Env = append(os.Environ(), "SYNC_PG_DSN=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs []string
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs = append(logs, sc.Text())
			mu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("syncd log:\n%s", strings.Join(logs, "\n"))
			mu.Unlock()
		}
	})
	var addr string
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case <-exited:
			return fmt.Errorf("syncd exited")
		default:
		}
		if addr == "" {
			mu.Lock()
			for _, l := range logs {
				if m := reListening.FindStringSubmatch(l); m != nil {
					addr = m[1]
				}
			}
			mu.Unlock()
			if addr == "" {
				return fmt.Errorf("syncd has not logged its HTTP address yet")
			}
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	return addr
}

// notify against a real syncd: every commit sent at the pace is timed at the other
// device of its workspace, none fails, there are no baselines, and the pace is
// reported.
func TestBenchNotifyAgainstSyncd(t *testing.T) {
	dsn, amqpURL := testenv.PostgresDSN(t), testenv.AMQPURL(t)
	vhost := strings.TrimPrefix(mustParseURL(t, amqpURL).Path, "/")
	addr := startTestSyncd(t, dsn, amqpURL)
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	defer rootCmd.SetOut(nil)
	rootCmd.SetArgs([]string{"--pg", dsn, "bench", "--amqp", amqpURL, "--vhost", vhost, "--rabbitmq-api", testenv.ManagementURL(),
		"--scenario", "notify", "--rate", "40", "--workspaces", "2", "--commits", "20",
		"--metrics-url", "http://" + addr + "/metrics", "--json"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := executeFresh(ctx); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON document: %v\n%s", err, out.String())
	}
	if len(rep.Scenarios) != 1 {
		t.Fatalf("scenarios %+v", rep.Scenarios)
	}
	n := rep.Scenarios[0]
	if n.Name != "notify" || n.Devices != 4 || n.Workspaces != 2 || n.RatePerSecond != 40 || n.Error != "" {
		t.Errorf("notify: %+v", n)
	}
	if n.Server.Ops != 20 || n.Server.Failed != 0 || n.Server.P50Ms <= 0 || n.Floor != nil || n.Insert != nil {
		t.Errorf("notify server: %+v", n.Server)
	}
}
