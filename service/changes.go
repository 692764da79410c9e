package service

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
)

// ItemEncoder appends the encoding of one item version to dst and returns it. md, its
// strings and its chunks are only valid during the call.
type ItemEncoder = func(dst []byte, md *domain.ItemMetadata) []byte

// encodedReads is what a ReadModel offers to answer getChanges already encoded
// (projections.Queries does): the stamp that names the content of a workspace's answer
// (its version and a tag that changes whenever the workspace is rewritten), and the
// answer rendered row by row with the stamp it was read at.
type encodedReads interface {
	ChangesStamp(ctx context.Context, ws uuid.UUID) (version, tag int64, err error)
	EncodedChanges(ctx context.Context, ws uuid.UUID, enc ItemEncoder) (pieces [][]byte, version, tag int64, err error)
}

// EncodedChanges answers getChanges as the array of the items enc renders, each
// rendered as its row is read, parents first: "[" item "," item ... "]" (for a JSON enc,
// a JSON array), in pieces to be written one after the other. With a cache, an answer is kept by workspace and stamp, and served
// again while the workspace's stamp, read at the time of the request, is the same: a
// commit made visible before the request (and so notified before it) changes the
// stamp, so no answer older than it is ever served. A cache holds the answers of one
// enc only. The pieces may be shared with the cache: callers must not change them.
func (s *Service) EncodedChanges(ctx context.Context, user, ws uuid.UUID, enc ItemEncoder, cache *ChangesCache) ([][]byte, error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return nil, err
	}
	er, ok := s.reads.(encodedReads)
	if !ok { // a read model without streaming (the in-memory one): encode what Changes gives
		items, err := s.Changes(ctx, user, ws)
		if err != nil {
			return nil, err
		}
		return [][]byte{encodeItems(items, enc)}, nil
	}
	if cache != nil {
		st, err := read(ctx, s.reads, func(ctx context.Context) (stamp, error) {
			v, tag, err := er.ChangesStamp(ctx, ws)
			return stamp{v, tag}, err
		})
		if err != nil {
			return nil, fmt.Errorf("changes of %s: %w", ws, err)
		}
		if pieces, ok := cache.get(ws, st); ok {
			return pieces, nil
		}
	}
	type answer struct {
		pieces [][]byte
		st     stamp
	}
	a, err := read(ctx, s.reads, func(ctx context.Context) (answer, error) {
		pieces, v, tag, err := er.EncodedChanges(ctx, ws, enc)
		return answer{pieces, stamp{v, tag}}, err
	})
	if err != nil {
		return nil, fmt.Errorf("changes of %s: %w", ws, err)
	}
	if cache != nil {
		cache.put(ws, a.st, a.pieces)
	}
	return a.pieces, nil
}

func encodeItems(items []domain.ItemMetadata, enc ItemEncoder) []byte {
	out := []byte{'['}
	for i := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = enc(out, &items[i])
	}
	return append(out, ']')
}

// stamp names the content of a workspace's getChanges answer (encodedReads.ChangesStamp).
type stamp struct{ version, tag int64 }

// ChangesCache keeps encoded getChanges answers, one per workspace (the one at its
// latest stamp seen), the least recently used dropped first once their bytes pass the
// bound. It is safe for concurrent use.
type ChangesCache struct {
	maxBytes int64

	mu    sync.Mutex
	bytes int64
	lru   *list.List // of *cached, most recently used first
	byWS  map[uuid.UUID]*list.Element
	hits  int64
	miss  int64
}

type cached struct {
	ws     uuid.UUID
	st     stamp
	pieces [][]byte
	bytes  int64
}

// NewChangesCache returns a cache of at most maxBytes of answers (an answer larger than
// maxBytes is not kept). maxBytes <= 0: nil, no cache.
func NewChangesCache(maxBytes int64) *ChangesCache {
	if maxBytes <= 0 {
		return nil
	}
	return &ChangesCache{maxBytes: maxBytes, lru: list.New(), byWS: map[uuid.UUID]*list.Element{}}
}

// ChangesCacheStats are a cache's counters.
type ChangesCacheStats struct {
	Entries      int
	Bytes        int64
	Hits, Misses int64
}

// Stats returns the cache's counters (zero for a nil cache).
func (c *ChangesCache) Stats() ChangesCacheStats {
	if c == nil {
		return ChangesCacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return ChangesCacheStats{Entries: c.lru.Len(), Bytes: c.bytes, Hits: c.hits, Misses: c.miss}
}

func (c *ChangesCache) get(ws uuid.UUID, st stamp) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byWS[ws]; ok && e.Value.(*cached).st == st {
		c.lru.MoveToFront(e)
		c.hits++
		return e.Value.(*cached).pieces, true
	}
	c.miss++
	return nil, false
}

// put keeps an answer as the workspace's answer at st, in place of any other of the
// workspace (an older stamp is never asked for again: a workspace's stamp only moves on).
func (c *ChangesCache) put(ws uuid.UUID, st stamp, pieces [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byWS[ws]; ok {
		c.remove(e)
	}
	var n int64
	for _, p := range pieces {
		n += int64(len(p))
	}
	if n > c.maxBytes {
		return
	}
	c.byWS[ws] = c.lru.PushFront(&cached{ws: ws, st: st, pieces: pieces, bytes: n})
	c.bytes += n
	for c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
	}
}

func (c *ChangesCache) remove(e *list.Element) {
	v := c.lru.Remove(e).(*cached)
	delete(c.byWS, v.ws)
	c.bytes -= v.bytes
}
