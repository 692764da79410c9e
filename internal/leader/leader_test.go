package leader

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// Two contenders for one role: only one runs the task at a time, and when the leader
// goes away the other takes over.
func TestOneLeaderAndTakeover(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	var running, maxRunning atomic.Int32
	var runs [2]atomic.Int32
	task := func(i int) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				if m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n) {
					continue
				}
				break
			}
			runs[i].Add(1)
			<-ctx.Done()
			return ctx.Err()
		}
	}
	cfg := Config{DSN: dsn, Name: "test-role", Retry: 20 * time.Millisecond, Check: 50 * time.Millisecond}
	ctx0, stop0 := context.WithCancel(context.Background())
	ctx1, stop1 := context.WithCancel(context.Background())
	defer stop1()
	done0 := make(chan error, 1)
	done1 := make(chan error, 1)
	go func() { done0 <- Run(ctx0, cfg, task(0)) }()
	testenv.Eventually(t, 5*time.Second, func() error {
		if runs[0].Load() == 0 {
			return errors.New("first contender not leading yet")
		}
		return nil
	})
	go func() { done1 <- Run(ctx1, cfg, task(1)) }()
	// The second must not run while the first holds the lock: give it many retries.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if runs[1].Load() != 0 {
			t.Fatal("second contender ran while the first held the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop0()
	if err := <-done0; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if runs[1].Load() == 0 {
			return errors.New("second contender has not taken over")
		}
		return nil
	})
	stop1()
	<-done1
	if maxRunning.Load() != 1 {
		t.Fatalf("%d tasks ran at once", maxRunning.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("empty config accepted")
	}
}
