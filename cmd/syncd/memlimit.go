package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// minMemoryLimit is the smallest limit syncd sets, and the smallest -memory-limit
// taken: below it the collector would run all the time.
const minMemoryLimit = 32 << 20

// cgroupRoot is where the cgroup hierarchies are mounted, and procSelfCgroup the
// file naming the process's cgroups in them.
const (
	cgroupRoot     = "/sys/fs/cgroup"
	procSelfCgroup = "/proc/self/cgroup"
)

// memoryLimit is the soft memory limit syncd sets (debug.SetMemoryLimit) and where it
// comes from: flag is -memory-limit (0: derive it, negative: none), gomemlimit the
// GOMEMLIMIT environment variable, cgroup the process's cgroup memory limit (0: none),
// offHeap the bytes of getChanges answers the process keeps outside Go's heap
// (-changes-cache-bytes), which Go's limit does not count. In order: the flag;
// GOMEMLIMIT, which the runtime has already applied (0, "keep"); 3/4 of the cgroup's
// limit (the rest for what neither counts: the binary's pages, the spare answer buffer,
// the kernel's buffers of its connections) less offHeap, but never less than half of it
// (a large cache does not starve the heap, which holds what the cache does not), and at
// least minMemoryLimit; else none. There is no fixed default: a limit below what the
// heap must hold makes the collector run all the time (up to half of the CPU), so only
// a budget the process is known to have, or one its operator gives, sets one.
func memoryLimit(flag int64, gomemlimit string, cgroup, offHeap int64) (limit int64, source string) {
	switch {
	case flag > 0:
		return flag, "-memory-limit"
	case flag < 0:
		return math.MaxInt64, "none (-memory-limit negative)"
	case gomemlimit != "":
		return 0, "GOMEMLIMIT"
	case cgroup <= 0:
		return math.MaxInt64, "none (no -memory-limit, GOMEMLIMIT or cgroup memory limit)"
	}
	total := cgroup / 4 * 3
	return max(total-max(offHeap, 0), total/2, minMemoryLimit), "3/4 of the cgroup's memory limit less -changes-cache-bytes (at most half)"
}

// cgroupMemoryFiles lists the files that hold the memory limits of the process's
// cgroup and of each cgroup above it, from the process's own up to the root, as
// /proc/self/cgroup (its text: selfCgroup) names them under root: cgroup v2's
// memory.max ("0::PATH") and v1's memory.limit_in_bytes ("N:...memory...:PATH").
// Inside a cgroup namespace PATH is "/", the root's own files; without one (a
// systemd service, a container runtime that gives none) the process's cgroup lies
// below the root, and a limit may be set at any level of it.
func cgroupMemoryFiles(root string, selfCgroup []byte) []string {
	var files []string
	add := func(dir, path, name string) {
		for p := filepath.Clean("/" + path); ; p = filepath.Dir(p) {
			files = append(files, filepath.Join(root, dir, p, name))
			if p == "/" {
				return
			}
		}
	}
	for line := range strings.Lines(string(selfCgroup)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			add("", parts[2], "memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			add("memory", parts[2], "memory.limit_in_bytes")
		}
	}
	if len(files) == 0 { // no /proc: the root's own files
		files = []string{filepath.Join(root, "memory.max"), filepath.Join(root, "memory", "memory.limit_in_bytes")}
	}
	return files
}

// cgroupMemoryLimit returns the lowest memory limit that files hold: 0 when none
// does ("max", v1's near-MaxInt64 for unlimited, or a file missing: a path of
// /proc/self/cgroup need not be mounted where this process sees it).
func cgroupMemoryLimit(files []string) int64 {
	var limit int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 || v >= math.MaxInt64/2 {
			continue // "max", or unlimited
		}
		if limit == 0 || v < limit {
			limit = v
		}
	}
	return limit
}

// processCgroupMemoryLimit is the memory limit that the process's cgroups set (0:
// none).
func processCgroupMemoryLimit() int64 {
	self, _ := os.ReadFile(procSelfCgroup) // none: the root's own files
	return cgroupMemoryLimit(cgroupMemoryFiles(cgroupRoot, self))
}

// applyMemoryLimit sets Go's soft memory limit as memoryLimit says and returns what it
// set (the limit in effect) and where it came from, for the start-up log.
func applyMemoryLimit(flag int64, getenv func(string) string, offHeap int64) (limit int64, source string) {
	limit, source = memoryLimit(flag, getenv("GOMEMLIMIT"), processCgroupMemoryLimit(), offHeap)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return debug.SetMemoryLimit(-1), source
}

// formatLimit renders a memory limit for the log.
func formatLimit(n int64) string {
	if n == math.MaxInt64 {
		return "none"
	}
	return fmt.Sprintf("%d MiB", n>>20)
}
