package projections

import (
	"context"
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
