//go:build cluster && measure

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// TestMeasureReadReplica benchmarks getChanges of one workspace of 5,000 items read
// from the primary against the same read from the standby (-pg-read), in alternating
// rounds (testing.Benchmark, one second each) on one pair of servers and one database:
// two syncd processes share it, one reading the primary (request queue ISyncService), one
// the standby (its own request queue), both without the getChanges cache so that every
// request reads the database. Besides the time per request it reports the CPU time the
// primary's and the standby's PostgreSQL processes spent per request (from /proc), which
// is what moving reads off the primary is for. It is a measurement, built only with the
// tag measure and run on demand:
//
//	go test -tags cluster,measure -count=1 -run TestMeasureReadReplica -v ./tests/
func TestMeasureReadReplica(t *testing.T) {
	pair := testenv.StartPGPair(t, filepath.Join(testenv.PGPairRoot(), "bench"), pairPrimaryPort, pairStandbyPort)
	s := services{dsn: pair.Primary.DSN("syncservice"), amqp: testenv.AMQPURL(t)}
	startSyncd(t, s, "-changes-cache-bytes", "-1")
	startSyncd(t, s, "-roles", "rpc", "-request-queue", "ISyncServiceStandby", "-changes-cache-bytes", "-1",
		"-pg-read", pair.Standby.DSN("syncservice"))
	a := addUser(t, s, "Bench")
	d := dialRaw(t, userURL(t, s, a), a.id)
	dev := d.register("bench-pc")
	const benchItems, perCommit = 5000, 500
	for c := range benchItems / perCommit {
		items := make([]any, perCommit)
		for i := range items {
			n := c*perCommit + i
			items[i] = itemJSON(int64(-1-n), fmt.Sprintf("file-%05d.txt", n), false, nil, int64(n))
		}
		d.ok("commit", map[string]any{"requestId": fmt.Sprintf("fill%d", c), "userId": a.id, "workspaceId": a.workspace,
			"deviceId": dev, "items": items})
	}
	params := map[string]any{"requestId": "gc", "userId": a.id, "workspaceId": a.workspace}
	for _, q := range []string{"ISyncService", "ISyncServiceStandby"} {
		if n, err := getChangesVia(d, q, params); err != nil || n != benchItems {
			t.Fatalf("getChanges via %s: %d items (%v), want %d", q, n, err, benchItems)
		}
	}
	run := func(queue string) func(b *testing.B) {
		return func(b *testing.B) {
			p0, s0 := pgCPU(pair.PID(pair.Primary)), pgCPU(pair.PID(pair.Standby))
			b.ResetTimer()
			for range b.N {
				if _, err := getChangesVia(d, queue, params); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			p1, s1 := pgCPU(pair.PID(pair.Primary)), pgCPU(pair.PID(pair.Standby))
			b.ReportMetric(float64((p1-p0).Microseconds())/float64(b.N), "primary-cpu-µs/op")
			b.ReportMetric(float64((s1-s0).Microseconds())/float64(b.N), "standby-cpu-µs/op")
		}
	}
	for round := range 3 {
		for _, w := range []struct{ name, queue string }{{"primary", "ISyncService"}, {"standby", "ISyncServiceStandby"}} {
			r := testing.Benchmark(run(w.queue))
			if r.N == 0 {
				t.Fatalf("round %d, %s: the benchmark failed", round, w.name)
			}
			t.Logf("round %d  getChanges(%d items) from the %s: %s", round, benchItems, w.name, r)
		}
	}
}

// getChangesVia calls getChanges through the request queue queue and returns the number
// of items answered.
func getChangesVia(d *rawDevice, queue string, params map[string]any) (int, error) {
	corr := uuid.NewString()
	body, err := json.Marshal(map[string]any{"method": "getChanges", "params": []any{params}, "id": corr})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := amqp.Publishing{ContentType: "application/json", Type: "gson", CorrelationId: corr, ReplyTo: d.replyQ, UserId: d.user.String(), Body: body}
	if err := d.ch.PublishWithContext(ctx, "rpc_global_exchange", queue, false, false, pub); err != nil {
		return 0, err
	}
	for {
		select {
		case m, ok := <-d.replies:
			if !ok {
				return 0, errors.New("reply channel closed")
			}
			if m.CorrelationId != corr {
				continue
			}
			var r struct {
				Result []json.RawMessage `json:"result"`
				Error  *wire.Error       `json:"error"`
			}
			if err := json.Unmarshal(m.Body, &r); err != nil {
				return 0, err
			}
			if r.Error != nil {
				return 0, fmt.Errorf("getChanges via %s: %+v", queue, r.Error)
			}
			return len(r.Result), nil
		case <-ctx.Done():
			return 0, fmt.Errorf("getChanges via %s: no answer", queue)
		}
	}
}

// pgCPU is the CPU time (user and system) of a postmaster and its processes so far.
func pgCPU(postmaster int) time.Duration {
	tick := 100.0 // USER_HZ on Linux
	var total float64
	for _, pid := range append([]int{postmaster}, processChildren(postmaster)...) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// After the comm: state(0) ppid(1) ... utime(11) stime(12).
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += u + st
	}
	return time.Duration(total / tick * float64(time.Second))
}

// processChildren lists the PIDs whose parent is pid.
func processChildren(pid int) []int {
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
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}
