package testenv

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ServerCPU is the CPU time used so far by the PostgreSQL server processes of the
// database q is connected to (Linux /proc: zero for a server on another machine;
// processes that exited are not counted). Benchmarks report it per operation: on a
// busy machine it varies far less than wall time, and a local PostgreSQL's time spent
// waiting for its WAL flush is not in it.
func ServerCPU(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (time.Duration, error) {
	rows, err := q.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
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
		total += time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	return total, nil
}
