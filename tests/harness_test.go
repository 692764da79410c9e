package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// binDir holds the syncd and syncctl binaries built once for the package's tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncservice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, cmd := range []string{"syncd", "syncctl"} {
		args := []string{"build", "-o", filepath.Join(dir, cmd)}
		if raceEnabled {
			args = append(args, "-race")
		}
		b := exec.Command("go", append(args, "../cmd/"+cmd)...)
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", cmd, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// services is one test's own database and vhost.
type services struct {
	dsn  string
	amqp string
}

func newServices(t *testing.T) services {
	return services{dsn: testenv.PostgresDSN(t), amqp: testenv.AMQPURL(t)}
}

// proc is a running syncd process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	http   string
	mu     sync.Mutex
	logs   []string
	exited chan struct{}
}

// reHTTPAddr finds the address syncd's HTTP server bound ("http listening", text or
// JSON log).
var reHTTPAddr = regexp.MustCompile(`"?msg"?[=:]"http listening".*"?addr"?[=:]"?([^"\s]+)`)

// startSyncd starts a syncd process on the test's services and waits until it is ready.
// It is stopped (SIGTERM, then SIGKILL) when the test ends; its log is shown if the test
// failed.
func startSyncd(t *testing.T, s services, args ...string) *proc {
	t.Helper()
	p := launchSyncd(t, s, args...)
	p.waitReady(t, 30*time.Second)
	return p
}

// launchSyncd starts a syncd process like startSyncd, without waiting for it to be
// ready.
func launchSyncd(t *testing.T, s services, args ...string) *proc {
	t.Helper()
	// Port 0: syncd binds a free port itself and logs it (a port picked here and
	// released before syncd binds it could be taken meanwhile).
	p := &proc{t: t, exited: make(chan struct{})}
	all := append([]string{"-pg", s.dsn, "-amqp", s.amqp, "-http", "127.0.0.1:0", "-log-level", "debug", "-shutdown-grace", "5s"}, args...)
	p.cmd = exec.Command(filepath.Join(binDir, "syncd"), all...)
	p.cmd.Env = append(os.Environ(), "SYNC_PG_DSN=")
	out, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(out)
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("syncd %s log:\n%s", p.http, strings.Join(p.logs, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

// waitReady waits until the process's /readyz answers 200 and it serves requests.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("syncd exited: %v", p.cmd.ProcessState)
		default:
		}
		if p.http == "" {
			addr, err := p.logged(reHTTPAddr)
			if err != nil {
				return err
			}
			p.http = addr
		}
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return p.waitLog("serving requests")
	})
}

func (p *proc) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.logs = append(p.logs, sc.Text())
		p.mu.Unlock()
	}
}

// logged returns the first submatch of re in syncd's log so far.
func (p *proc) logged(re *regexp.Regexp) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("syncd has not logged %v yet", re)
}

// waitLog returns nil once a log line contains s.
func (p *proc) waitLog(s string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		if strings.Contains(l, s) {
			return nil
		}
	}
	return fmt.Errorf("syncd has not logged %q yet", s)
}

// stop sends SIGTERM and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// syncctl runs the admin tool on the test's database and returns its output.
func syncctl(t *testing.T, s services, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "syncctl"), append([]string{"--pg", s.dsn}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("syncctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func execCommand(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
