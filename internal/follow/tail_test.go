package follow

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// follower of a test: records every event handed to it and checkpoints in memory.
type recorder struct {
	mu  sync.Mutex
	cp  eventstore.Position
	got []eventstore.Position
}

func (r *recorder) load(context.Context) (eventstore.Position, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cp, nil
}

func (r *recorder) handle(batch []eventstore.RecordedEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range batch {
		r.got = append(r.got, e.Position)
	}
	r.cp = batch[len(batch)-1].Position
}

func (r *recorder) positions() []eventstore.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Followers sharing one Tail each get every event exactly once, in the global order,
// while events keep arriving: a fast one, a slow one held back until the others have
// everything (so the tail must not make anyone wait for it), and one that restarts from
// its checkpoint again and again. The tail never holds more than its byte bound, and it
// serves reads from memory.
func TestTailHandsEveryEventToEveryFollowerInOrder(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	const total, size = 600, 100
	tail, err := NewTail(TailConfig{Store: store, MaxBytes: 40 * size, ReadLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var overBound sync.Once
	var overErr error
	checkBound := func() {
		if st := tail.Stats(); st.Bytes > 40*size {
			overBound.Do(func() { overErr = fmt.Errorf("tail holds %d bytes, bound %d", st.Bytes, 40*size) })
		}
	}
	newFollower := func(name string, r *recorder, batch int) *Follower {
		f, err := New(Config{Name: name, Reader: tail, Load: r.load, BatchSize: batch, PollMax: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	fast, other := &recorder{}, &recorder{}
	for _, p := range []struct {
		name string
		r    *recorder
		n    int
	}{{"fast", fast, 10}, {"other", other, 25}} {
		f := newFollower(p.name, p.r, p.n)
		wg.Go(func() {
			_ = f.Run(ctx, func(_ context.Context, b []eventstore.RecordedEvent) (int, error) {
				checkBound()
				p.r.handle(b)
				return len(b), nil
			})
		})
	}
	slow, release := &recorder{}, make(chan struct{})
	fSlow := newFollower("slow", slow, 5)
	wg.Go(func() {
		_ = fSlow.Run(ctx, func(ctx context.Context, b []eventstore.RecordedEvent) (int, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			slow.handle(b)
			return len(b), nil
		})
	})
	restarting := &recorder{}
	fRe := newFollower("restarting", restarting, 3)
	wg.Go(func() {
		for ctx.Err() == nil {
			rctx, stop := context.WithTimeout(ctx, time.Duration(1+rand.IntN(20))*time.Millisecond)
			_ = fRe.Run(rctx, func(_ context.Context, b []eventstore.RecordedEvent) (int, error) {
				restarting.handle(b)
				return len(b), nil
			})
			stop()
			if len(restarting.positions()) == total {
				return
			}
		}
	})
	appendN(t, store, total, size) // while they follow
	want := allPositions(t, store)
	complete := func(r *recorder, name string) func() error {
		return func() error {
			got := r.positions()
			if len(got) > total {
				t.Fatalf("%s got %d events, %d stored: some twice", name, len(got), total)
			}
			if len(got) < total {
				return fmt.Errorf("%s has %d of %d events", name, len(got), total)
			}
			return nil
		}
	}
	eventually(t, time.Minute, complete(fast, "fast"))
	eventually(t, time.Minute, complete(other, "other"))
	close(release) // the slow one held nobody back
	eventually(t, time.Minute, complete(slow, "slow"))
	eventually(t, time.Minute, complete(restarting, "restarting"))
	cancel()
	wg.Wait()
	for name, r := range map[string]*recorder{"fast": fast, "other": other, "slow": slow, "restarting": restarting} {
		if got := r.positions(); !slices.Equal(got, want) {
			t.Errorf("%s got %d events, not the global order exactly (first difference at %d)", name, len(got), firstDiff(got, want))
		}
	}
	if overErr != nil {
		t.Error(overErr)
	}
	if st := tail.Stats(); st.Hits == 0 || st.Own == 0 {
		t.Errorf("tail stats %+v: want reads served from memory and own reads of the followers behind", st)
	}
}

func firstDiff(a, b []eventstore.Position) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Followers at the tail's end share one store read: with several of them woken
// together at the end, the store is read less often than they read.
func TestTailSharesReadsAtTheEnd(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	tail, err := NewTail(TailConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, store, 100, 10)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	for i := range 4 {
		wg.Go(func() {
			pos, n := eventstore.Start, 0
			for n < 100 {
				evs, err := tail.ReadAfter(ctx, pos, 10, 0)
				if err != nil {
					t.Error(err)
					return
				}
				n += len(evs)
				pos = evs[len(evs)-1].Position
			}
			mu.Lock()
			got[i] = n
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := range 4 {
		if got[i] != 100 {
			t.Fatalf("reader %d got %d events, want 100", i, got[i])
		}
	}
	st := tail.Stats()
	if st.Shared+st.Own >= st.Hits+st.Shared+st.Own || st.Hits < 30 {
		t.Fatalf("stats %+v: 40 reads of 4 readers should mostly be served from memory", st)
	}
}

// The run keeps nothing every follower is past: once the followers handed out by
// Follower have all read beyond events, those are dropped (their data freed), while
// what a follower has yet to read is still served from memory; a follower that has
// not read yet keeps everything.
func TestTailDropsWhatEveryFollowerIsPast(t *testing.T) {
	store := memstore.New()
	defer store.Close()
	tail, err := NewTail(TailConfig{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, store, 100, 10)
	ctx := context.Background()
	a, b := tail.Follower(), tail.Follower()
	read := func(r Reader, from eventstore.Position, limit int) eventstore.Position {
		t.Helper()
		evs, err := r.ReadAfter(ctx, from, limit, 0)
		if err != nil || len(evs) == 0 {
			t.Fatalf("read after %v: %d events, %v", from, len(evs), err)
		}
		return evs[len(evs)-1].Position
	}
	posA := eventstore.Start
	for range 10 {
		posA = read(a, posA, 10)
	}
	if st := tail.Stats(); st.Events != 100 {
		t.Fatalf("b has not read yet: the tail holds %d events, want all 100", st.Events)
	}
	posB := read(b, eventstore.Start, 40)
	hits := tail.Stats().Hits
	posB = read(b, posB, 60) // b is past 40: the first 40 go
	if st := tail.Stats(); st.Events != 60 || st.Bytes != 600 || st.Hits != hits+1 {
		t.Fatalf("stats %+v: want the 60 events b has yet to read, served to it from memory", st)
	}
	if evs, err := a.ReadAfter(ctx, posA, 10, 0); err != nil || len(evs) != 0 {
		t.Fatalf("a at the end: %d events, %v", len(evs), err)
	}
	if evs, err := b.ReadAfter(ctx, posB, 10, 0); err != nil || len(evs) != 0 {
		t.Fatalf("b at the end: %d events, %v", len(evs), err)
	}
	if st := tail.Stats(); st.Events != 0 || st.Bytes != 0 {
		t.Fatalf("stats %+v: both followers are past every event", st)
	}
	appendN(t, store, 5, 10)
	if read(a, posA, 10) != read(b, posB, 10) {
		t.Fatal("the followers read different ends")
	}
}
