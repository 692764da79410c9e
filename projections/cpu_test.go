package projections

import (
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// cpuTimes is the CPU time used so far by this process and by the PostgreSQL server
// processes of the pool's database (testenv.ServerCPU). On a busy machine a run's CPU
// time varies far less than its wall time.
func cpuTimes(b *testing.B, pool *pgxpool.Pool) (self, server time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	server, err := testenv.ServerCPU(context.Background(), pool)
	if err != nil {
		b.Fatal(err)
	}
	return self, server
}

// reportCPU reports the CPU seconds per million events since (self0, server0).
func reportCPU(b *testing.B, pool *pgxpool.Pool, events int, self0, server0 time.Duration) {
	self, server := cpuTimes(b, pool)
	b.ReportMetric((self-self0).Seconds()*1e6/float64(events), "go-cpu-s/Mevents")
	b.ReportMetric((server-server0).Seconds()*1e6/float64(events), "pg-cpu-s/Mevents")
}

// resetPeakRSS resets this process's peak resident set size (Linux: clear_refs), so that
// peakRSS reports the peak of what runs after it, not of the history's generation.
// Elsewhere it does nothing and peakRSS reports the process's peak.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// reportPeakRSS reports the peak resident set size in MiB since resetPeakRSS (Linux's
// VmHWM; nothing where /proc is missing).
func reportPeakRSS(b *testing.B) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				b.ReportMetric(float64(kb)/1024, "peak-rss-MiB")
			}
		}
	}
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(b *testing.B, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}
