package rpc

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/stacksync-es/syncservice/internal/offheap"
)

// anonymousMappings says whether newOffHeap maps (every unix system).
const anonymousMappings = offheap.Supported

// offHeapMin is the size from which a getChanges reply's buffer is kept outside Go's
// heap (offHeap): a variable so that tests can put every reply there.
var offHeapMin = 1 << 20

// offHeapBytes counts the bytes of the buffers mapped outside Go's heap, for tests.
var offHeapBytes atomic.Int64

// offHeap is a buffer mapped outside Go's heap (anonymous memory from the operating
// system), for the largest objects syncd keeps: getChanges replies, 44 MB at 100,000
// items. Go's collector lets the heap grow to twice what is live before it collects,
// so a reply on the heap held about twice its size in RSS; outside it, it holds its own
// size, and its pages go back to the system as soon as it is freed. Its owner is
// whoever holds the *offHeap (a changesReply, or the cache as its spare): free it once
// nothing reads the bytes any more; if the *offHeap itself becomes unreachable first
// (a holder that never released its reply), a cleanup frees it then. Safe for
// concurrent use.
type offHeap struct {
	mu      sync.Mutex
	b       []byte // the whole mapping; nil once freed
	cleanup runtime.Cleanup
}

// newOffHeap maps a buffer of n bytes outside the heap, or returns nil (the caller
// then allocates on the heap): on a system without anonymous mappings, or when the
// mapping fails.
func newOffHeap(n int) *offHeap {
	b := offheap.Map(n)
	if b == nil {
		return nil
	}
	offHeapBytes.Add(int64(len(b)))
	h := &offHeap{b: b}
	h.cleanup = runtime.AddCleanup(h, unmapBytes, b)
	return h
}

// bytes is the buffer, empty, with the mapping's capacity.
func (h *offHeap) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.b[:0]
}

// holds reports whether b lies in h's mapping (an append that outgrew it moved to the
// heap).
func (h *offHeap) holds(b []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return cap(b) > 0 && cap(h.b) > 0 && &b[:1][0] == &h.b[:1][0]
}

// free unmaps the buffer: nothing may read or write it afterwards. A nil h, or one
// freed already, is left alone.
func (h *offHeap) free() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.b == nil {
		return
	}
	h.cleanup.Stop()
	unmapBytes(h.b)
	h.b = nil
}

// unmapBytes gives a mapping back to the system.
func unmapBytes(b []byte) {
	offHeapBytes.Add(-int64(len(b)))
	offheap.Unmap(b)
}
