package rpc

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/offheap"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

// Replies outside the heap are unmapped as soon as the cache lets them go: a replaced
// reply becomes the spare (the spare it replaces is unmapped), a reply the cache does
// not keep is unmapped once the request that made it released it, one smaller than
// the spare too; and a cache dropped with its replies unmapped by the collector.
func TestOffHeapRepliesAreUnmapped(t *testing.T) {
	if !anonymousMappings { // replies stay on the heap here: a large buffer must come from it
		if b, off := newChangesCache(1 << 30).buffer(4 * offHeapMin); off != nil || cap(b) < 4*offHeapMin {
			t.Fatalf("without anonymous mappings a buffer of %d bytes: capacity %d, off-heap %v", 4*offHeapMin, cap(b), off != nil)
		}
		return
	}
	if b := offheap.Map(1); b == nil {
		t.Fatal("mapping one byte outside the heap failed")
	} else {
		offheap.Unmap(b)
	}
	cache := newChangesCache(1 << 30)
	ws := uuid.New()
	v := func(n int64) service.ChangesStamp { return service.ChangesStamp{Version: n, Tag: n} }
	reply := func(n int64, size int) *changesReply {
		b, off := cache.buffer(size)
		if off == nil {
			t.Fatalf("a buffer of %d bytes is on the heap", size)
		}
		return &changesReply{ws: ws, st: v(n), head: append(b, "answer"...), off: off}
	}
	freed := func(h *offHeap) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.b == nil
	}
	r1 := reply(1, 2000)
	off1 := r1.off
	cache.put(r1)
	cache.release(r1) // the request that made it
	r2 := reply(2, 3000)
	off2 := r2.off
	cache.put(r2) // r1 leaves the cache: its buffer is the spare
	cache.release(r2)
	if freed(off1) || cache.spareOff != off1 {
		t.Fatal("the replaced reply's buffer should be the spare, mapped")
	}
	r3 := reply(3, 4000) // the spare is too small for it
	cache.put(r3)        // r2 leaves: its buffer, larger, replaces the spare
	if !freed(off1) || freed(off2) || cache.spareOff != off2 {
		t.Fatalf("the larger buffer should be the spare and the smaller unmapped (freed: %v, %v)", freed(off1), freed(off2))
	}
	cache.release(r3)
	old := reply(2, 5000) // read at an older version: not kept
	oldOff := old.off
	cache.put(old)
	if freed(oldOff) {
		t.Fatal("a reply not kept was unmapped while the request that made it held it")
	}
	cache.release(old) // larger than the spare: the spare now
	if !freed(off2) || cache.spareOff != oldOff {
		t.Fatal("the released reply not kept should have replaced the smaller spare")
	}
	small := &changesReply{ws: ws, st: v(9)}
	small.head, small.off = cache.buffer(100) // the spare
	spareTaken := small.off
	cache.adopt(small)
	cache.release(small)
	if freed(spareTaken) {
		t.Fatal("a reply's buffer that came back as the only spare was unmapped")
	}

	// A reply over the cache's bound is not kept, nor its buffer as the spare.
	bounded := newChangesCache(1000)
	b, off := bounded.buffer(2000)
	big := &changesReply{ws: ws, st: v(1), head: append(b, "answer"...), off: off}
	bounded.put(big)
	bounded.release(big)
	if !freed(off) || bounded.spareOff != nil {
		t.Fatal("the buffer of a reply over the cache's bound should have been unmapped")
	}

	// Dropped without a release: the collector unmaps what the cache held.
	before, held := offHeapBytes.Load(), int64(cap(r3.head)+cap(cache.spare))
	if held < 4000+5000 || before < held {
		t.Fatalf("%d bytes mapped, %d of them held by the cache; want r3's and the spare's", before, held)
	}
	cache, r1, r2, r3, old, small = nil, nil, nil, nil, nil, nil
	off1, off2, oldOff, spareTaken = nil, nil, nil, nil
	testenv.Eventually(t, 10*time.Second, func() error {
		runtime.GC()
		if n := offHeapBytes.Load(); n > before-held {
			return fmt.Errorf("%d bytes still mapped, want at most %d", n, before-held)
		}
		return nil
	})
}

// A getChanges answered to nobody (async: no reply is rendered) gives back its hold on the
// cached answer, which is then recycled once it leaves the cache, as a replied one is.
func TestAnAnswerNotRenderedIsReleased(t *testing.T) {
	cache := newChangesCache(1 << 30)
	ws := uuid.New()
	b, off := cache.buffer(2000)
	r := &changesReply{ws: ws, st: service.ChangesStamp{Version: 1, Tag: 1}, head: append(b, "answer"...), off: off}
	cache.put(r) // the request that made it holds it
	first := &r.head[:1][0]
	out := outcome{method: "getChanges", async: true, result: r}
	out.discard()
	next := &changesReply{ws: ws, st: service.ChangesStamp{Version: 2, Tag: 2}}
	next.head, next.off = cache.buffer(3000)
	cache.put(next) // r leaves the cache
	if cap(cache.spare) == 0 || &cache.spare[:1][0] != first {
		t.Fatal("the answer no reply was rendered from stayed held: not recycled when it left the cache")
	}
}
