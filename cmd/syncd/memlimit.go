package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// minMemoryLimit is the smallest limit syncd sets, and the smallest -memory-limit
// taken: below it the collector would run all the time.
const minMemoryLimit = 32 << 20

// cgroupMemoryFiles are where a cgroup's memory limit is read, v2 then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

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

// cgroupMemoryLimit reads the process's cgroup memory limit from the first of files
// that exists: 0 when there is none ("max", or v1's near-MaxInt64 for unlimited).
func cgroupMemoryLimit(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 || v >= math.MaxInt64/2 {
			return 0 // "max", or unlimited
		}
		return v
	}
	return 0
}

// applyMemoryLimit sets Go's soft memory limit as memoryLimit says and returns what it
// set (the limit in effect) and where it came from, for the start-up log.
func applyMemoryLimit(flag int64, getenv func(string) string, offHeap int64) (limit int64, source string) {
	limit, source = memoryLimit(flag, getenv("GOMEMLIMIT"), cgroupMemoryLimit(cgroupMemoryFiles), offHeap)
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
