// Package offheap owns memory mapped outside Go's heap: anonymous mappings for the
// largest buffers syncd holds, getChanges answers and the blocks a full read renders
// them into. Outside the heap such a buffer costs its own size in RSS and goes back to
// the system the moment it is unmapped; on the heap it would raise the collector's
// goal to twice what was live while it was, and the heap would keep those pages.
// Whoever maps a buffer owns it and must unmap it once nothing reads it: a use after
// Unmap faults.
package offheap

import "sync/atomic"

// Supported says whether Map maps (every unix system); elsewhere it returns nil and
// callers keep their buffers on the heap.
const Supported = supported

var mapped atomic.Int64

// Map maps n bytes of zeroed anonymous memory, or returns nil: where mappings are not
// Supported, or when the system refuses one.
func Map(n int) []byte {
	b := mapBytes(n)
	if b != nil {
		mapped.Add(int64(len(b)))
	}
	return b
}

// Unmap gives back a buffer that Map returned (the whole slice, as returned); nothing
// may read or write it afterwards.
func Unmap(b []byte) {
	if b == nil {
		return
	}
	mapped.Add(-int64(len(b)))
	unmap(b)
}

// Mapped is the number of bytes mapped by Map and not yet unmapped.
func Mapped() int64 { return mapped.Load() }
