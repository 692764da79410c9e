package rpc

import (
	"testing"

	"github.com/google/uuid"

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
	cache.put(reply(a, 100))
	cache.put(reply(b, 100))
	if cache.get(a, st) == nil { // a is now the most recently used
		t.Fatal("a was not kept")
	}
	cache.put(reply(c, 100)) // over 250 bytes: b goes
	if got := cache.stats(); got.entries != 2 || got.bytes != 200 {
		t.Fatalf("cache %+v, want 2 replies of 100 bytes", got)
	}
	if cache.get(b, st) != nil || cache.get(a, st) == nil || cache.get(c, st) == nil {
		t.Fatal("the least recently used reply should have gone, the others stayed")
	}
	newer := reply(a, 50)
	cache.put(newer) // in place of a's other reply
	if got := cache.stats(); got.entries != 2 || got.bytes != 150 || cache.get(a, st) != newer {
		t.Fatalf("cache %+v: a's reply should have been replaced", got)
	}
	cache.put(reply(b, 251))
	if got := cache.stats(); got.entries != 2 || got.bytes != 150 || cache.get(b, st) != nil {
		t.Fatalf("cache %+v: a reply over the bound was kept", got)
	}
	cache.put(reply(a, 251)) // replaces a's, and is not kept either
	if cache.get(a, st) != nil {
		t.Fatal("a's old reply should have gone with the new one")
	}

	// Stamps: a reply is served at its own stamp only; a request at a later version
	// drops it at once; a reply read at an older version does not replace a newer one.
	v1, v2, v2b := service.ChangesStamp{Version: 1, Tag: 5}, service.ChangesStamp{Version: 2, Tag: 6}, service.ChangesStamp{Version: 2, Tag: 9}
	r2 := &changesReply{ws: c, st: v2, head: make([]byte, 10)}
	cache.put(r2)
	if cache.get(c, v2) != r2 || cache.get(c, v1) != nil || cache.get(c, v2) != r2 {
		t.Fatal("a request at an older stamp should neither get nor drop the newer reply")
	}
	cache.put(&changesReply{ws: c, st: v1, head: make([]byte, 10)})
	if cache.get(c, v2) != r2 {
		t.Fatal("a reply of an older version replaced a newer one")
	}
	if cache.get(c, v2b) != nil || cache.stats().entries != 0 { // c's was the last one
		t.Fatalf("a request at another stamp of the same version should drop the reply: %+v", cache.stats())
	}
}
