package rpc

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A goroutine that finished its task takes the next one (keeping its grown stack)
// instead of a new goroutine being started; tasks beyond the waiting goroutines get new
// ones at once; wg still waits for the tasks, and stop lets the waiting goroutines go.
func TestWorkersReuseWaitingGoroutines(t *testing.T) {
	w := newWorkers(4)
	var ran atomic.Int64
	const tasks = 100
	for range tasks {
		w.goRun(func() { ran.Add(1) })
		w.wg.Wait()
		// A goroutine counts itself waiting just before it waits: one in a while the
		// next task comes in between and gets a new goroutine.
		waitFor(t, "a goroutine to wait for work", func() bool { return w.waiting.Load() >= 1 })
	}
	if got := w.spawned.Load(); got > tasks/10 {
		t.Fatalf("%d goroutines started for %d tasks one after another: the waiting ones are not reused", got, tasks)
	}

	before := w.spawned.Load()
	release, started := make(chan struct{}), atomic.Int64{}
	for range 3 * before {
		w.goRun(func() { started.Add(1); <-release; ran.Add(1) })
	}
	waitFor(t, "every blocked task to have a goroutine", func() bool { return started.Load() == 3*before })
	close(release)
	w.wg.Wait()
	if got := ran.Load(); got != tasks+3*before {
		t.Fatalf("%d tasks ran, want %d", got, tasks+3*before)
	}
	w.stop()
	waitFor(t, "every goroutine to exit after stop", func() bool { return w.live.Load() == 0 })
}
