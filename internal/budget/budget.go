// Package budget bounds, in bytes, the memory a process holds for the requests it is
// serving: a Pool is a weighted semaphore of bytes, a Reservation is one request's share
// of it, carried in the request's context so that the read path can grow it as it builds
// an answer. It never blocks a grower: a Reservation that cannot grow fails at once with
// ErrExhausted (the request is answered Busy), so requests holding bytes never wait on
// one another.
package budget

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"
)

// ErrExhausted says the pool has no room for a reservation to grow.
var ErrExhausted = errors.New("budget: in-flight bytes exhausted")

// Pool is a fixed number of bytes shared by reservations.
type Pool struct {
	sem  *semaphore.Weighted
	size int64
}

// NewPool returns a pool of size bytes (size > 0).
func NewPool(size int64) *Pool {
	return &Pool{sem: semaphore.NewWeighted(size), size: size}
}

// Size is the pool's capacity in bytes.
func (p *Pool) Size() int64 { return p.size }

// Acquire waits until n bytes are free and returns a reservation holding them. n must
// not exceed Size; it fails only when ctx ends first.
func (p *Pool) Acquire(ctx context.Context, n int64) (*Reservation, error) {
	if n > p.size {
		return nil, fmt.Errorf("reserve %d bytes of %d: %w", n, p.size, ErrExhausted)
	}
	if err := p.sem.Acquire(ctx, n); err != nil {
		return nil, fmt.Errorf("reserve %d bytes: %w", n, err)
	}
	return &Reservation{p: p, held: n}, nil
}

// TryAcquire takes n bytes without waiting; false if the pool has no room for them.
func (p *Pool) TryAcquire(n int64) (*Reservation, bool) {
	if n > p.size || !p.sem.TryAcquire(n) {
		return nil, false
	}
	return &Reservation{p: p, held: n}, true
}

// Reservation is bytes held by one request. It is safe for concurrent use.
type Reservation struct {
	p    *Pool
	mu   sync.Mutex
	held int64
}

// Grow takes n more bytes without waiting; ErrExhausted if the pool has no room.
func (r *Reservation) Grow(n int64) error {
	if n <= 0 {
		return nil
	}
	if !r.p.sem.TryAcquire(n) {
		return fmt.Errorf("grow a reservation of %d bytes by %d (pool %d): %w", r.Held(), n, r.p.size, ErrExhausted)
	}
	r.mu.Lock()
	r.held += n
	r.mu.Unlock()
	return nil
}

// Held is the bytes the reservation holds now.
func (r *Reservation) Held() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

// Release gives every byte held back to the pool. It is idempotent.
func (r *Reservation) Release() {
	r.mu.Lock()
	n := r.held
	r.held = 0
	r.mu.Unlock()
	if n > 0 {
		r.p.sem.Release(n)
	}
}

type ctxKey struct{}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Reservation) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// Grow grows the reservation ctx carries by n bytes; without one it does nothing.
func Grow(ctx context.Context, n int64) error {
	r, _ := ctx.Value(ctxKey{}).(*Reservation)
	if r == nil {
		return nil
	}
	return r.Grow(n)
}
