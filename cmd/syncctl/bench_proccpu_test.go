package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// A command name may hold spaces and parentheses: the fields start after the last ')'.
	line := "4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 10 0 0\n"
	comm, ticks, ok := parseProcStat([]byte(line))
	if !ok || comm != "postgres: a (b) c" || ticks != 325 {
		t.Fatalf("parseProcStat = %q, %d, %v; want %q, 325, true", comm, ticks, ok, "postgres: a (b) c")
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, _, ok := parseProcStat([]byte(bad)); ok {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}

func TestGroupOf(t *testing.T) {
	cases := []struct {
		pid  int
		comm string
		want string
	}{
		{7, "postgres", groupPostgres}, {8, "beam.smp", groupRabbitMQ}, {14, "amqbeam.smp", groupRabbitMQ}, {9, "syncd", groupSyncd},
		{10, "syncctl", groupBench}, {11, "syncctl", ""}, {12, "bash", ""}, {13, "postgresql-x", ""},
	}
	for _, c := range cases {
		if got := groupOf(c.pid, 10, c.comm); got != c.want {
			t.Errorf("groupOf(%d, %q) = %q, want %q", c.pid, c.comm, got, c.want)
		}
	}
}

// The CPU between two samples: a process running through both counts its difference,
// one started in between counts whole, one that ended is missed.
func TestLocalCPUPerOp(t *testing.T) {
	root := t.TempDir()
	write := func(pid, comm string, ticks int) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := pid + " (" + comm + ") S 1 1 1 0 -1 0 0 0 0 0 " + strconv.Itoa(ticks) + " 0 0 0 20 0 1 0 1 0 0\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100", "postgres", 1000)
	write("101", "postgres", 50)
	write("200", "beam.smp", 400)
	write("300", "bash", 999)
	before, err := sampleProcs(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	write("100", "postgres", 1100)               // +100
	_ = os.RemoveAll(filepath.Join(root, "101")) // ended: missed
	write("102", "postgres", 20)                 // started: whole
	write("200", "beam.smp", 450)                // +50
	write("1", "syncctl", 30)                    // bench itself, started
	after, err := sampleProcs(root, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := localCPUPerOp(before, after, 10)
	// Ticks are 1/100 s: PostgreSQL's 100+20 ticks over 10 operations are 120 ms each.
	want := []procCPU{{groupPostgres, 120}, {groupRabbitMQ, 50}, {groupSyncd, 0}, {groupBench, 30}}
	if len(got) != len(want) {
		t.Fatalf("localCPUPerOp = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("group %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if localCPUPerOp(nil, after, 10) != nil || localCPUPerOp(before, after, 0) != nil {
		t.Error("a missing sample or no operations gave figures")
	}
	var out bytes.Buffer
	printLocalCPU(&out, got, "commit", 2)
	if s := out.String(); !strings.Contains(s, "postgres 120.000") || !strings.Contains(s, "total 200.000") || !strings.Contains(s, "2 cores busy at 10 commits/s") {
		t.Errorf("printed %q", s)
	}
}
