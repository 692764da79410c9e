package service

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// usageCache remembers what owners use in their other workspaces (the read models'
// OwnerUsageExcept), which every commit needs for its quota check and its notification's
// usedQuota. An answer is kept for Config.UserStaleness, like the quota limit it is
// checked against. A commit of this process to one of the owner's workspaces makes
// every answer that counts that workspace stale at once; a commit through another
// process is seen within UserStaleness.
type usageCache struct {
	ttl time.Duration
	max int

	mu     sync.Mutex
	owners map[uuid.UUID]*ownerUsage
}

// ownerUsage is what is remembered of one owner.
type ownerUsage struct {
	gen    uint64                   // moved by each commit of this process to the owner's workspaces
	except map[uuid.UUID]usageEntry // OwnerUsageExcept(owner, key)
}

type usageEntry struct {
	bytes int64
	at    time.Time
	gen   uint64 // the owner's generation when it was read
}

func newUsageCache(ttl time.Duration, max int) *usageCache {
	return &usageCache{ttl: ttl, max: max, owners: map[uuid.UUID]*ownerUsage{}}
}

// owner returns owner's record, creating it; c.mu is held.
func (c *usageCache) owner(id uuid.UUID) *ownerUsage {
	o := c.owners[id]
	if o == nil {
		if len(c.owners) >= c.max {
			clear(c.owners)
		}
		o = &ownerUsage{except: map[uuid.UUID]usageEntry{}}
		c.owners[id] = o
	}
	return o
}

// elsewhere returns the bytes owner uses in their workspaces other than except.
func (c *usageCache) elsewhere(ctx context.Context, s *Service, owner, except uuid.UUID) (int64, error) {
	c.mu.Lock()
	o := c.owner(owner)
	gen := o.gen
	e, ok := o.except[except]
	c.mu.Unlock()
	if ok && e.gen == gen && time.Since(e.at) <= c.ttl {
		return e.bytes, nil
	}
	at := time.Now()
	bytes, err := read(ctx, s.reads, func(ctx context.Context) (int64, error) { return s.reads.OwnerUsageExcept(ctx, owner, except) })
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Kept only if no commit of this process to the owner's workspaces began meanwhile:
	// the read may not include it.
	if o := c.owner(owner); o.gen == gen {
		o.except[except] = usageEntry{bytes: bytes, at: at, gen: gen}
	}
	return bytes, nil
}

// committing records that this process is changing what owner uses in workspace ws:
// every remembered answer that counts ws is stale, and so is any read under way. The
// answer that leaves ws out stays good. Call it before the append and again after it.
func (c *usageCache) committing(owner, ws uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.owner(owner)
	o.gen++
	keep, ok := o.except[ws]
	clear(o.except)
	if ok && keep.gen == o.gen-1 {
		keep.gen = o.gen
		o.except[ws] = keep
	}
}
