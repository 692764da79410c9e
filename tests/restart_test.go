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
// non-durable objects vanish). syncd re-declares its topology and serves on; every
// commit acknowledged to the device is stored once and notified at least once through
// the device's durable queue.
func TestBrokerRestart(t *testing.T) {
	s := newServices(t)
	startSyncd(t, s)
	a := addUser(t, s, "Rita")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("rita-pc")
	const total = 20
	for i := range total {
		if i == total/2 {
			run(t, "rabbitmqctl", "-q", "stop_app")
			run(t, "rabbitmqctl", "-q", "start_app")
			run(t, "rabbitmqctl", "-q", "await_startup")
		}
		d = commitUntilRecorded(t, s, a, d, a.workspace, dev, fmt.Sprintf("r%d", i), itemJSON(int64(-1-i), fmt.Sprintf("r%d", i), false, nil, 1))
	}
	d = dialRawRetry(t, userURL(t, s, a), a.id)
	waitVersion(t, d, a.workspace, total)
	d.listen(dev).collectVersions(t, total, 60*time.Second)
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
