package rpc

import (
	"container/list"
	"context"
	"sync"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// getChanges answers from the cache when it holds the workspace's answer at the stamp
// the service reads now (after checking the caller may read it); otherwise it has the
// service render the answer, patched from the cache's answer of an earlier version
// when it holds one (only the items written since are read), or every item row by
// row, copies the pieces once into the reply's head and keeps that in the cache, by
// the stamp the items were read at.
func (s *Server) getChanges(ctx context.Context, _ *session, d *amqp.Delivery, req wire.Request) (any, error) {
	r, err := wire.ParseGetChanges(req.Params)
	if err != nil {
		return nil, err
	}
	if _, err := s.identify(d, r.UserID, true); err != nil {
		return nil, err
	}
	st, cacheable, err := s.svc.ChangesStamp(ctx, r.UserID, r.WorkspaceID)
	if err != nil {
		return nil, err
	}
	cacheable = cacheable && s.changes != nil
	var older *changesReply
	if cacheable {
		var c *changesReply
		if c, older = s.changes.get(r.WorkspaceID, st); c != nil {
			return c, nil
		}
		defer s.changes.release(older) // once the new reply is copied out of it
	}
	a, err := s.svc.EncodedAnswer(ctx, r.UserID, r.WorkspaceID, older.base(), wire.AppendItem)
	if err != nil {
		return nil, err
	}
	if a.Release != nil { // a full read's render blocks, once copied (or on a panic)
		defer a.Release()
	}
	s.changes.count(a.Patched)
	n := len(resultPrefix) + replyEndRoom
	for _, p := range a.Pieces {
		n += len(p)
	}
	buf, off := s.changes.buffer(n)
	c := &changesReply{ws: r.WorkspaceID, st: service.ChangesStamp{Version: a.Version, Tag: a.Tag},
		head: wire.AppendRawResult(buf, a.Pieces...), items: a.Items, off: off}
	if off != nil && !off.holds(c.head) { // n was short: the reply grew onto the heap
		off.free()
		c.off = nil
	}
	if cacheable && len(c.head) <= s.cfg.MaxReplyBytes {
		s.changes.put(c)
	} else {
		s.changes.adopt(c)
	}
	return c, nil
}

// resultPrefix is what wire.AppendRawResult writes before the result.
const resultPrefix = `{"result":`

// replyEndRoom is the room a changesReply keeps after its head for the end of a
// response (its id): a request's id longer than that costs a copy of the reply.
const replyEndRoom = 256

// changesReply is a getChanges reply up to its end (wire.AppendRawResult), with room
// after it for the end (wire.AppendResponseEnd). The replies made of it are written in
// that room one at a time, each under mu until it is published: a cached answer is
// sent again and again without a copy.
//
// A reply that was put in a cache counts the requests holding it (refs, under the
// cache's lock: each one the cache gave it to, and the one that made it); once it has
// left the cache and none holds it, its buffer is reused for a later reply (a patch
// after every commit would otherwise leave a whole answer's buffer to the garbage
// collector each time). A holder that never releases it only keeps the buffer from
// being reused, or, when it is outside the heap (offHeap), from being unmapped until
// the reply itself is unreachable.
type changesReply struct {
	ws    uuid.UUID
	st    service.ChangesStamp
	items []changeset.Item // by id, where each lies after resultPrefix (nil: not patchable)
	mu    sync.Mutex
	head  []byte   // never appended to but under mu
	off   *offHeap // head's buffer when it is outside the heap, else nil

	cache   *changesCache // the cache it was put in, nil if none
	refs    int           // holders, under cache.mu
	retired bool          // it left the cache, under cache.mu
}

// base returns the reply as the base of a patch (changeset.Patch): nil for none. Its
// text is never written to (replies are written after it, under mu), so patches read
// it without the lock.
func (c *changesReply) base() *changeset.Base {
	if c == nil || c.items == nil {
		return nil
	}
	return &changeset.Base{Text: c.head[len(resultPrefix):len(c.head):len(c.head)], Items: c.items, Version: c.st.Version}
}

// bytes is the memory the reply holds.
func (c *changesReply) bytes() int64 { return int64(cap(c.head)) + changeset.Bytes(c.items) }

// body returns the reply to request id, and the function that must be called once the
// reply is published (or given up), and only then.
func (c *changesReply) body(id string) ([]byte, func()) {
	c.mu.Lock()
	return wire.AppendResponseEnd(c.head, id), sync.OnceFunc(func() {
		c.mu.Unlock()
		c.cache.release(c)
	})
}

// changesCache keeps getChanges replies, one per workspace (at the latest stamp put),
// the least recently used dropped first once their bytes (each reply's text and item
// index) pass maxBytes. It is safe for concurrent use.
type changesCache struct {
	maxBytes int64

	mu       sync.Mutex
	bytes    int64
	lru      *list.List // of *changesReply, most recently used first
	byWS     map[uuid.UUID]*list.Element
	hits     int64
	misses   int64
	patched  int64    // misses answered by a patch of an older reply
	spare    []byte   // the buffer of a reply no one holds any more, for the next one
	spareOff *offHeap // spare's buffer when it is outside the heap
}

// newChangesCache returns a cache of at most maxBytes of replies; none (nil) when
// maxBytes <= 0.
func newChangesCache(maxBytes int64) *changesCache {
	if maxBytes <= 0 {
		return nil
	}
	return &changesCache{maxBytes: maxBytes, lru: list.New(), byWS: map[uuid.UUID]*list.Element{}}
}

// get returns the workspace's reply if it is the one at st; otherwise, if the one it
// holds is of an earlier version, that one (older), to patch: it stays until the
// newer one is put, so that requests arriving together after a commit all patch it.
// A reply at another stamp of the same version (a rebuild or a restore rewrote the
// workspace) is dropped at once: it will not be asked for again, and the answer about
// to be read in full takes its place (the old one is not held while it is built).
func (c *changesCache) get(ws uuid.UUID, st service.ChangesStamp) (hit, older *changesReply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.misses++
	e, ok := c.byWS[ws]
	if !ok {
		return nil, nil
	}
	r := e.Value.(*changesReply)
	switch {
	case r.st == st:
		c.misses--
		c.hits++
		c.lru.MoveToFront(e)
		r.refs++
		return r, nil
	case r.st.Version < st.Version:
		r.refs++
		return nil, r
	case r.st.Version == st.Version:
		c.remove(e)
	}
	return nil, nil
}

// release notes that a holder of r (from get, or the request that made it) is done
// with it; r may be nil.
func (c *changesCache) release(r *changesReply) {
	if c == nil || r == nil || r.cache != c {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.refs--
	c.recycle(r)
}

// recycle keeps r's buffer as the spare once r left the cache and no one holds it (the
// larger of it and the spare there is; at most one, of at most maxBytes); a buffer
// outside the heap that is not kept is unmapped at once.
func (c *changesCache) recycle(r *changesReply) {
	if !r.retired || r.refs > 0 || r.head == nil {
		return
	}
	if cap(r.head) >= cap(c.spare) && int64(cap(r.head)) <= c.maxBytes {
		c.spareOff.free()
		c.spare, c.spareOff = r.head[:0], r.off
	} else {
		r.off.free()
	}
	r.head, r.off = nil, nil
}

// buffer returns an empty buffer of at least n bytes, and the mapping it lies in when
// it is outside the heap (nil: on the heap): the spare if it is large enough (not
// zeroed: the reply overwrites what it uses), else a new one with room for the answer
// to grow by 1/64 (its later versions, a commit's items larger each, still fit in it
// when it comes back as the spare), outside the heap from offHeapMin bytes.
func (c *changesCache) buffer(n int) ([]byte, *offHeap) {
	if c == nil {
		return make([]byte, 0, n), nil
	}
	c.mu.Lock()
	if cap(c.spare) >= n {
		b, off := c.spare, c.spareOff
		c.spare, c.spareOff = nil, nil
		c.mu.Unlock()
		return b, off
	}
	c.mu.Unlock()
	size := n + n/64
	if size >= offHeapMin {
		if off := newOffHeap(size); off != nil {
			return off.bytes(), off
		}
	}
	return make([]byte, 0, size), nil
}

// count notes how a miss was answered.
func (c *changesCache) count(patched bool) {
	if c == nil || !patched {
		return
	}
	c.mu.Lock()
	c.patched++
	c.mu.Unlock()
}

// put keeps r in place of the reply of its workspace, unless that one is of a later
// version (a request that read an older stamp finished last). A reply larger than
// maxBytes is not kept. Either way the request that made r holds it until it releases
// it (a reply not kept is then recycled).
func (c *changesCache) put(r *changesReply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.cache, r.refs = c, 1 // the request that made it holds it
	if e, ok := c.byWS[r.ws]; ok {
		if e.Value.(*changesReply).st.Version > r.st.Version {
			r.retired = true
			return
		}
		c.remove(e)
	}
	if r.bytes() > c.maxBytes {
		r.retired = true
		return
	}
	c.byWS[r.ws] = c.lru.PushFront(r)
	c.bytes += r.bytes()
	for c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
	}
}

// adopt takes r, made with a buffer of c but not to be kept, as put takes a reply it
// does not keep: its buffer is recycled once the request that made it releases it.
func (c *changesCache) adopt(r *changesReply) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.cache, r.refs, r.retired = c, 1, true
}

func (c *changesCache) remove(e *list.Element) {
	r := c.lru.Remove(e).(*changesReply)
	delete(c.byWS, r.ws)
	c.bytes -= r.bytes()
	r.retired = true
	c.recycle(r)
}

// changesCacheStats are a cache's counters, for tests.
type changesCacheStats struct {
	entries               int
	bytes                 int64
	hits, misses, patched int64
}

func (c *changesCache) stats() changesCacheStats {
	if c == nil {
		return changesCacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return changesCacheStats{entries: c.lru.Len(), bytes: c.bytes, hits: c.hits, misses: c.misses, patched: c.patched}
}
