package projections

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// cpuTimes is the CPU time used so far by this process and by the PostgreSQL server
// processes of the pool's database (Linux /proc; server processes that exited are not
// counted). On a busy machine a run's CPU time varies far less than its wall time.
func cpuTimes(b *testing.B, pool *pgxpool.Pool) (self, server time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // exited, or another machine's server
		}
		// Fields after the command's closing parenthesis: state is the 1st, utime the 12th, stime the 13th.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		server += time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	return self, server
}

// reportCPU reports the CPU seconds per million events since (self0, server0).
func reportCPU(b *testing.B, pool *pgxpool.Pool, events int, self0, server0 time.Duration) {
	self, server := cpuTimes(b, pool)
	b.ReportMetric((self-self0).Seconds()*1e6/float64(events), "go-cpu-s/Mevents")
	b.ReportMetric((server-server0).Seconds()*1e6/float64(events), "pg-cpu-s/Mevents")
}
