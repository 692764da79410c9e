package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
)

// The machine's CPU per operation, by process (--local-cpu): when PostgreSQL, RabbitMQ
// and syncd run on the machine bench runs on, their CPU seconds are read from /proc
// before and after each server phase. Their sum per operation bounds the throughput the
// machine's cores allow, whatever the server does with its own share.

// userHz is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHz = 100

// Process groups of --local-cpu, in report order.
const (
	groupPostgres = "postgres"
	groupRabbitMQ = "rabbitmq"
	groupSyncd    = "syncd"
	groupBench    = "bench"
)

var procGroups = []string{groupPostgres, groupRabbitMQ, groupSyncd, groupBench}

// procSample is the CPU ticks each process of a group had used, by group and pid.
type procSample map[string]map[int]uint64

// groupOf names the group of a process by its command name, "" for none. self is
// bench's own pid.
func groupOf(pid, self int, comm string) string {
	switch {
	case pid == self:
		return groupBench
	case comm == "postgres" || strings.HasPrefix(comm, "postgres:"):
		return groupPostgres
	case comm == "beam.smp" || comm == "amqbeam.smp" || comm == "erl_child_setup" || comm == "epmd" || comm == "inet_gethost":
		return groupRabbitMQ
	case comm == "syncd":
		return groupSyncd
	}
	return ""
}

// sampleProcs reads every process of root (normally /proc); processes that vanish
// while it reads are skipped.
func sampleProcs(root string, self int) (procSample, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("--local-cpu: %w", err)
	}
	s := procSample{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		comm, ticks, ok := parseProcStat(b)
		if !ok {
			continue
		}
		if g := groupOf(pid, self, comm); g != "" {
			if s[g] == nil {
				s[g] = map[int]uint64{}
			}
			s[g][pid] = ticks
		}
	}
	return s, nil
}

// parseProcStat returns the command name and utime+stime of one /proc/<pid>/stat. The
// name is in parentheses and may itself hold spaces and parentheses: the fields
// after it start after the last ')'.
func parseProcStat(b []byte) (comm string, ticks uint64, ok bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(string(b[end+1:]))
	// After the name: state(3) ppid(4) … utime(14) stime(15), so indexes 11 and 12.
	if len(f) < 13 {
		return "", 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, false
	}
	return string(b[open+1 : end]), ut + st, true
}

// procCPU is one group's CPU milliseconds per operation.
type procCPU struct {
	Process string  `json:"process"`
	MsPerOp float64 `json:"ms_per_op"`
}

// localCPUPerOp is each group's CPU per operation between two samples. A process
// started in between counts whole (all its CPU is in the interval); one that ended in
// between is missed. Nil when either sample is missing or nothing was done.
func localCPUPerOp(before, after procSample, ops int) []procCPU {
	if before == nil || after == nil || ops == 0 {
		return nil
	}
	var out []procCPU
	for _, g := range procGroups {
		var ticks uint64
		for pid, t := range after[g] {
			if t0, ok := before[g][pid]; ok && t0 <= t {
				ticks += t - t0
			} else if !ok {
				ticks += t
			}
		}
		ms := float64(ticks) * 1000 / userHz / float64(ops)
		out = append(out, procCPU{Process: g, MsPerOp: math.Round(ms*1000) / 1000})
	}
	return out
}

// printLocalCPU writes the groups' CPU per operation, their sum, and the rate at which
// the machine's cores would all be busy.
func printLocalCPU(w io.Writer, cpus []procCPU, unit string, cores int) {
	if len(cpus) == 0 {
		return
	}
	parts := make([]string, 0, len(cpus))
	var total float64
	for _, c := range cpus {
		parts = append(parts, fmt.Sprintf("%s %.3f", c.Process, c.MsPerOp))
		total += c.MsPerOp
	}
	fmt.Fprintf(w, "  machine CPU ms per %s: %s; total %.3f", unit, strings.Join(parts, ", "), total)
	if total > 0 && cores > 0 {
		fmt.Fprintf(w, " (%d cores busy at %.0f %s/s)", cores, float64(cores)*1000/total, unitPlural(unit))
	}
	fmt.Fprintln(w)
}

// startCPUProfile profiles bench itself into path until stop is called (--cpu-profile).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
