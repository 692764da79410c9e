package rpc

import (
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/service"
)

// TestChangesCacheBound checks that the cache keeps one reply per workspace, drops the
// least recently used past its bytes, and keeps no reply larger than its bound.
func TestChangesCacheBound(t *testing.T) {
	if newChangesCache(0) != nil || newChangesCache(-1) != nil {
		t.Fatal("a cache of no bytes should be none")
	}
	var st service.ChangesStamp
	reply := func(ws uuid.UUID, size int) *changesReply {
		return &changesReply{ws: ws, st: st, head: make([]byte, 10, size)}
	}
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	cache := newChangesCache(250)
	get := func(ws uuid.UUID, st service.ChangesStamp) *changesReply {
		hit, _ := cache.get(ws, st)
		return hit
	}
	cache.put(reply(a, 100))
	cache.put(reply(b, 100))
	if get(a, st) == nil { // a is now the most recently used
		t.Fatal("a was not kept")
	}
	cache.put(reply(c, 100)) // over 250 bytes: b goes
	if got := cache.stats(); got.entries != 2 || got.bytes != 200 {
		t.Fatalf("cache %+v, want 2 replies of 100 bytes", got)
	}
	if get(b, st) != nil || get(a, st) == nil || get(c, st) == nil {
		t.Fatal("the least recently used reply should have gone, the others stayed")
	}
	newer := reply(a, 50)
	cache.put(newer) // in place of a's other reply
	if got := cache.stats(); got.entries != 2 || got.bytes != 150 || get(a, st) != newer {
		t.Fatalf("cache %+v: a's reply should have been replaced", got)
	}
	cache.put(reply(b, 251))
	if got := cache.stats(); got.entries != 2 || got.bytes != 150 || get(b, st) != nil {
		t.Fatalf("cache %+v: a reply over the bound was kept", got)
	}
	cache.put(reply(a, 251)) // replaces a's, and is not kept either
	if get(a, st) != nil {
		t.Fatal("a's old reply should have gone with the new one")
	}

	// Stamps: a reply is served at its own stamp only; a request at a later version
	// gets it to patch, and it stays until the newer one is put; a reply read at an
	// older version does not replace a newer one; a request at another stamp of the
	// same version drops it at once.
	v1, v2, v2b, v3 := service.ChangesStamp{Version: 1, Tag: 5}, service.ChangesStamp{Version: 2, Tag: 6},
		service.ChangesStamp{Version: 2, Tag: 9}, service.ChangesStamp{Version: 3, Tag: 10}
	r2 := &changesReply{ws: c, st: v2, head: make([]byte, 10)}
	cache.put(r2)
	if get(c, v2) != r2 || get(c, v1) != nil || get(c, v2) != r2 {
		t.Fatal("a request at an older stamp should neither get nor drop the newer reply")
	}
	if hit, older := cache.get(c, v3); hit != nil || older != r2 || get(c, v2) != r2 {
		t.Fatalf("a request at a later version should get the reply to patch (%v, %v) and leave it", hit, older)
	}
	cache.put(&changesReply{ws: c, st: v1, head: make([]byte, 10)})
	if get(c, v2) != r2 {
		t.Fatal("a reply of an older version replaced a newer one")
	}
	if hit, older := cache.get(c, v2b); hit != nil || older != nil || cache.stats().entries != 0 { // c's was the last one
		t.Fatalf("a request at another stamp of the same version should drop the reply: %+v", cache.stats())
	}
	r3 := &changesReply{ws: c, st: v3, head: make([]byte, 10), items: make([]changeset.Item, 2)}
	cache.put(r3)
	if got := cache.stats(); got.bytes != 10+64 {
		t.Fatalf("a reply of 10 bytes and 2 items counts %d bytes, want 74", got.bytes)
	}
}

// TestChangesCacheReusesBuffers checks that a reply's buffer is reused for a later
// reply only once the reply left the cache and every holder released it: the request
// that made it, those that got it to serve, and those that patch from it.
func TestChangesCacheReusesBuffers(t *testing.T) {
	cache := newChangesCache(1000)
	ws := uuid.New()
	v := func(n int64) service.ChangesStamp { return service.ChangesStamp{Version: n, Tag: n} }
	same := func(a, b []byte) bool { return cap(a) > 0 && cap(b) > 0 && &a[:1][0] == &b[:1][0] }
	// reply makes a reply of n bytes in a buffer of the cache, as getChanges does.
	reply := func(n int64, size int, text string) *changesReply {
		b, off := cache.buffer(size)
		return &changesReply{ws: ws, st: v(n), head: append(b, text...), off: off}
	}
	buffer := func(n int) []byte {
		b, _ := cache.buffer(n)
		return b
	}
	r1 := reply(1, 100, "one")
	buf1 := r1.head
	cache.put(r1) // held by the request that made it
	cache.release(r1)
	hit, _ := cache.get(ws, v(1)) // a request serving it
	_, older := cache.get(ws, v(2))
	if hit != r1 || older != r1 {
		t.Fatal("the reply should be served at its stamp and patched from at a later one")
	}
	r2 := reply(2, 100, "two")
	if same(r2.head, buf1) {
		t.Fatal("a buffer was reused while its reply was in the cache")
	}
	cache.put(r2) // r1 leaves the cache, still held twice
	cache.release(older)
	if b := buffer(100); same(b, buf1) {
		t.Fatal("a buffer was reused while a request serving it held it")
	}
	_, publish := hit.body("id")
	publish() // the last holder
	publish() // at most once
	b, bOff := cache.buffer(100)
	if !same(b, buf1) || len(b) != 0 || r1.head != nil {
		t.Fatalf("r1's buffer should be the spare once its last holder released it (reused %v, len %d), and r1 hold none", same(b, buf1), len(b))
	}
	if b2 := buffer(100); same(b2, b) {
		t.Fatal("the spare was handed out twice")
	}
	bOff.free()
	// A new buffer has room for the answer to grow, so that the next version, a little
	// larger, still fits in it when it comes back as the spare.
	r3 := reply(3, 640, string(make([]byte, 640)))
	buf3 := r3.head
	cache.put(r3)
	cache.release(r3)
	r4 := reply(4, 650, "")
	cache.put(r4) // r3 leaves, its buffer becomes the spare
	cache.release(r4)
	if b := buffer(645); !same(b, buf3) {
		t.Fatal("the buffer of a slightly smaller answer was not reused")
	}
}
