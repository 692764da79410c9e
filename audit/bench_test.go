package audit

import (
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// BenchmarkReplay measures the replay rate (events/s) of the audit over one workspace
// history of SYNC_BENCH_EVENTS events (opt-in: without it the benchmark skips), in the
// store SYNC_BENCH_STORE names: "postgres" (default; a fresh test database) or
// "memory". For example:
//
//	SYNC_BENCH_EVENTS=1000000 go test ./audit -run '^$' -bench Replay -benchtime 1x -timeout 60m
//
// The history is one-item commits: 1,000 files created, then changed round-robin, with a
// member joining every 5,000 events.
func BenchmarkReplay(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("SYNC_BENCH_EVENTS"))
	if n <= 0 {
		b.Skip("set SYNC_BENCH_EVENTS (e.g. 1000000) to run the replay benchmark")
	}
	var store eventstore.Store
	switch kind := os.Getenv("SYNC_BENCH_STORE"); kind {
	case "", "postgres":
		s, err := postgres.Open(b.Context(), postgres.Config{DSN: testenv.PostgresDSN(b)})
		if err != nil {
			b.Fatal(err)
		}
		store = s
	case "memory":
		store = memstore.New()
	default:
		b.Fatalf("SYNC_BENCH_STORE=%q: want postgres or memory", kind)
	}
	defer store.Close()
	ws := fixedID("bench")
	start := time.Now()
	h := bulkHistory(b, store, ws, n, 1000)
	fill := time.Since(start)
	b.Logf("wrote %d events (%d commits) in %s: %.0f events/s", n, h.w.Version(), fill.Round(time.Millisecond), float64(n)/fill.Seconds())
	last := h.w.Version()
	h = nil // let the writer's state go before measuring

	// Warm the store's caches with one untimed read of the whole stream, so the first
	// measurement is not the only one reading from disk.
	if r, err := newAuditor(b, store, Config{PageSize: 5000}).Verify(b.Context(), domain.WorkspaceStream(ws)); err != nil || !r.OK() {
		b.Fatalf("warm-up verify: %v %+v", err, r)
	}

	rate := func(b *testing.B, run func(a *Auditor) error) {
		a := newAuditor(b, store, Config{PageSize: 5000})
		runs := 0
		cpu0 := cpuTime(b)
		for b.Loop() {
			if err := run(a); err != nil {
				b.Fatal(err)
			}
			runs++
		}
		events := float64(n) * float64(runs)
		b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
		// The machine may be shared: the CPU this process spent per event (the store's
		// server not included) tells the replay's own cost apart from waiting for a core.
		b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/events, "cpu-ns/event")
	}
	for _, f := range []Format{FormatJSONL, FormatTable} {
		b.Run("log-"+string(f), func(b *testing.B) {
			rate(b, func(a *Auditor) error {
				sink, err := NewEntryWriter(io.Discard, f)
				if err != nil {
					return err
				}
				return a.Log(b.Context(), LogQuery{Workspace: ws}, sink)
			})
		})
	}
	b.Run("at-last-version", func(b *testing.B) {
		rate(b, func(a *Auditor) error {
			st, err := a.At(b.Context(), AtQuery{Workspace: ws, Version: &last})
			if err == nil && len(st.Items) != 1000 {
				b.Fatalf("state has %d items, want 1000", len(st.Items))
			}
			return err
		})
	})
	b.Run("verify", func(b *testing.B) {
		rate(b, func(a *Auditor) error {
			r, err := a.Verify(b.Context(), domain.WorkspaceStream(ws))
			if err == nil && !r.OK() {
				b.Fatalf("untouched history reported broken: %+v", r.Streams[0].Break)
			}
			return err
		})
	})
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
