package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is Go's soft memory limit for syncd when neither -memory-limit,
// GOMEMLIMIT nor a cgroup memory limit says otherwise: room for the default
// getChanges cache (64 MiB) and the decided state of a 100,000-item workspace (about
// 29 MB) with the transient buffers of a full read (docs/operations.md, "Memory").
const DefaultMemoryLimit = 128 << 20

// minMemoryLimit is the smallest -memory-limit taken: below it the collector would run
// all the time.
const minMemoryLimit = 32 << 20

// cgroupMemoryFiles are where a cgroup's memory limit is read, v2 then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit is the soft memory limit syncd sets (debug.SetMemoryLimit) and where it
// comes from: flag is -memory-limit (0: derive it, negative: none), gomemlimit the
// GOMEMLIMIT environment variable, cgroup the process's cgroup memory limit (0: none).
// In order: the flag; GOMEMLIMIT, which the runtime has already applied (0, "keep");
// 3/4 of the cgroup's limit, leaving the rest to what Go does not count (the binary's
// pages, the kernel's buffers of the process's connections); DefaultMemoryLimit.
func memoryLimit(flag int64, gomemlimit string, cgroup int64) (limit int64, source string) {
	switch {
	case flag > 0:
		return flag, "-memory-limit"
	case flag < 0:
		return math.MaxInt64, "none (-memory-limit negative)"
	case gomemlimit != "":
		return 0, "GOMEMLIMIT"
	case cgroup > 0:
		return cgroup / 4 * 3, "3/4 of the cgroup's memory limit"
	}
	return DefaultMemoryLimit, "default"
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
func applyMemoryLimit(flag int64, getenv func(string) string) (limit int64, source string) {
	limit, source = memoryLimit(flag, getenv("GOMEMLIMIT"), cgroupMemoryLimit(cgroupMemoryFiles))
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
