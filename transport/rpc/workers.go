package rpc

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a handler goroutine waits for another delivery before it
// exits.
const workerIdle = 10 * time.Second

// workers are a session's handler goroutines: sem bounds those handling a request at
// once (Concurrency), wg waits for the tasks in flight.
//
// A goroutine that finished its task waits up to workerIdle for the next one rather
// than exiting: a request's handling goes deep (the service, the store's pgx batch, the
// broker), and a fresh goroutine's stack starts small and is copied each time it
// doubles on the way down, which was 4–6% of syncd's CPU per commit in a profile of
// `syncctl bench --scenario spread`. A goroutine kept for the next request keeps its
// grown stack.
type workers struct {
	sem  chan struct{}
	wg   sync.WaitGroup
	idle chan func()   // unbuffered: a send succeeds only if a goroutine waits for work
	done chan struct{} // closed by stop: waiting goroutines exit

	spawned, live, waiting atomic.Int64 // goroutines started, alive, waiting for work
}

func newWorkers(concurrency int) *workers {
	return &workers{sem: make(chan struct{}, concurrency), idle: make(chan func()), done: make(chan struct{})}
}

// goRun runs f on a worker goroutine the session waits for: one waiting for work if
// there is one, a new one otherwise. It never blocks.
func (w *workers) goRun(f func()) {
	w.wg.Add(1)
	select {
	case w.idle <- f:
	default:
		w.spawned.Add(1)
		w.live.Add(1)
		go w.run(f)
	}
}

// run runs f, then the tasks handed to it while it waits, until it has waited
// workerIdle for one or stop was called.
func (w *workers) run(f func()) {
	defer w.live.Add(-1)
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		w.do(f)
		t.Reset(workerIdle)
		w.waiting.Add(1)
		select {
		case f = <-w.idle:
			w.waiting.Add(-1)
		case <-t.C:
			w.waiting.Add(-1)
			return
		case <-w.done:
			w.waiting.Add(-1)
			return
		}
	}
}

func (w *workers) do(f func()) {
	defer w.wg.Done()
	f()
}

// stop lets the goroutines waiting for work exit; tasks in flight finish (wg).
func (w *workers) stop() { close(w.done) }
