package esdb

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// conn is one esdb.Client and the count of calls into it that have not returned.
//
// The v4 client has two traps this type exists for: after a failed node discovery its
// connection goroutine exits for good (every later call fails with
// ErrorCodeConnectionClosed), and a call made while discovery runs can block forever on
// an unbuffered channel, ignoring its context — closing the client then panics that
// call ("send on closed channel"). So calls run in a goroutine that the caller can
// abandon on ctx (callCtx), a dead client is replaced (renew), and a client is closed
// only when no call into it is pending.
type conn struct {
	c       *esdb.Client
	pending atomic.Int64   // calls not returned yet
	calls   sync.WaitGroup // the same calls, to wait for
}

func (s *Store) newConn() (*conn, error) {
	cfg := s.esCfg
	c, err := esdb.NewClient(&cfg)
	if err != nil {
		return nil, err
	}
	return &conn{c: c}, nil
}

// renew replaces c, whose connection goroutine has exited, by a new client. The dead
// client is not closed: a call may still be blocked on its channel (see conn).
func (s *Store) renew(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.conn != c {
		return
	}
	n, err := s.newConn()
	if err != nil {
		s.log.Error("esdb: cannot create a new client", "err", err)
		return
	}
	s.log.Warn("esdb: client connection closed; replaced it by a new client")
	s.conn = n
}

// callCtx runs fn, a call into c, and returns its result, or ctx's error as soon as ctx
// ends. An abandoned call keeps running; release frees its result if it succeeds later.
func callCtx[T any](ctx context.Context, c *conn, fn func() (T, error), release func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	c.pending.Add(1)
	c.calls.Add(1)
	go func() {
		v, err := fn()
		c.pending.Add(-1)
		c.calls.Done()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && release != nil {
				release(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}
