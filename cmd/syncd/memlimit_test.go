package main

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// The soft memory limit: the flag first, then GOMEMLIMIT (left as the runtime set it),
// then 3/4 of a cgroup limit less the answers kept outside the heap (at most half of
// it), else none; a negative flag sets none.
func TestMemoryLimitSources(t *testing.T) {
	for _, c := range []struct {
		flag       int64
		gomemlimit string
		cgroup     int64
		offHeap    int64
		want       int64
	}{
		{0, "", 0, 64 << 20, math.MaxInt64}, // the defaults on a machine with no budget given
		{0, "", 0, 0, math.MaxInt64},
		{0, "", 1 << 30, 1 << 30, 384 << 20},  // at least half for the heap
		{0, "", 1 << 30, -1, 768 << 20},       // no cache
		{0, "", 40 << 20, 64 << 20, 32 << 20}, // at least minMemoryLimit
		{200 << 20, "", 0, 64 << 20, 200 << 20},
		{200 << 20, "1GiB", 1 << 30, 64 << 20, 200 << 20},
		{-1, "", 1 << 30, 64 << 20, math.MaxInt64},
		{0, "1GiB", 1 << 30, 64 << 20, 0}, // keep the runtime's
		{0, "", 1 << 30, 64 << 20, 704 << 20},
	} {
		if got, src := memoryLimit(c.flag, c.gomemlimit, c.cgroup, c.offHeap); got != c.want || src == "" {
			t.Errorf("memoryLimit(%d, %q, %d, %d) = %d (%s), want %d", c.flag, c.gomemlimit, c.cgroup, c.offHeap, got, src, c.want)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		files []string
		want  int64
	}{
		{[]string{missing}, 0},
		{[]string{write("v2max", "max\n")}, 0},
		{[]string{write("v2", "536870912\n")}, 512 << 20},
		{[]string{missing, write("v1", "1073741824\n")}, 1 << 30},
		{[]string{write("v1unlimited", "9223372036854771712\n")}, 0},
	} {
		if got := cgroupMemoryLimit(c.files); got != c.want {
			t.Errorf("cgroupMemoryLimit(%v) = %d, want %d", c.files, got, c.want)
		}
	}
}

// The process's cgroup may lie below the hierarchy's root (no cgroup namespace: a
// systemd service, this very machine's v1 memory cgroup), and a limit set at any level
// above it holds for it too: the lowest limit from the process's cgroup up to the root
// counts, for v2 and v1 alike; a path not mounted where the process looks, or no
// /proc/self/cgroup, leaves the root's own files.
func TestCgroupMemoryFiles(t *testing.T) {
	root := t.TempDir()
	put := func(path, s string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put("memory.max", "max\n")
	put("system.slice/memory.max", "2147483648\n")
	put("system.slice/syncd.service/memory.max", "max\n")
	put("memory/memory.limit_in_bytes", "9223372036854771712\n")
	put("memory/kubepods/memory.limit_in_bytes", "9223372036854771712\n")
	put("memory/kubepods/pod1/memory.limit_in_bytes", "805306368\n")
	for _, c := range []struct {
		name, self string
		want       int64
	}{
		{"v2, a limit on the parent slice", "0::/system.slice/syncd.service\n", 2 << 30},
		{"v2, in a namespace: the root's", "0::/\n", 0},
		{"v1, a limit on the process's own cgroup", "12:pids:/kubepods/pod1\n4:memory:/kubepods/pod1\n1:name=systemd:/kubepods/pod1\n", 768 << 20},
		{"v1 and v2 (hybrid): the lowest", "4:cpu,memory:/kubepods/pod1\n0::/system.slice/syncd.service\n", 768 << 20},
		{"a path not mounted here", "0::/elsewhere/x\n", 0},
		{"no /proc/self/cgroup", "", 0},
	} {
		if got := cgroupMemoryLimit(cgroupMemoryFiles(root, []byte(c.self))); got != c.want {
			t.Errorf("%s: limit %d, want %d (files %v)", c.name, got, c.want, cgroupMemoryFiles(root, []byte(c.self)))
		}
	}
	put("memory/memory.limit_in_bytes", "1073741824\n") // the root's own, with no /proc
	if got := cgroupMemoryLimit(cgroupMemoryFiles(root, nil)); got != 1<<30 {
		t.Errorf("no /proc/self/cgroup, a limit on the v1 root: %d", got)
	}
}

// applyMemoryLimit sets the runtime's limit (and leaves it alone under GOMEMLIMIT).
func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	none := func(string) string { return "" }
	if got, _ := applyMemoryLimit(300<<20, none, 64<<20); got != 300<<20 || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Errorf("-memory-limit 300 MiB: applied %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(77 << 20)
	if got, src := applyMemoryLimit(0, func(k string) string { return map[string]string{"GOMEMLIMIT": "77MiB"}[k] }, 64<<20); got != 77<<20 || src != "GOMEMLIMIT" {
		t.Errorf("under GOMEMLIMIT: %d from %s, want the runtime's 77 MiB", got, src)
	}
	if got, _ := applyMemoryLimit(-1, none, 64<<20); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("-memory-limit -1: %d", got)
	}
}

// The flag and its variable; a limit too small to run with is refused.
func TestConfigMemoryLimit(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if c, err := parseConfig(nil, env(nil), io.Discard); err != nil || c.memoryLimit != 0 {
		t.Fatalf("default: %d, %v", c.memoryLimit, err)
	}
	if c, err := parseConfig(nil, env(map[string]string{"SYNCD_MEMORY_LIMIT": "268435456"}), io.Discard); err != nil || c.memoryLimit != 256<<20 {
		t.Fatalf("SYNCD_MEMORY_LIMIT: %d, %v", c.memoryLimit, err)
	}
	if c, err := parseConfig([]string{"-memory-limit", "-1"}, env(nil), io.Discard); err != nil || c.memoryLimit != -1 {
		t.Fatalf("-memory-limit -1: %d, %v", c.memoryLimit, err)
	}
	if _, err := parseConfig([]string{"-memory-limit", "1000000"}, env(nil), io.Discard); err == nil {
		t.Error("-memory-limit of 1 MB accepted")
	}
}
