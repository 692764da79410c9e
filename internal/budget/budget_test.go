package budget

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReservationsShareThePool(t *testing.T) {
	p := NewPool(100)
	ctx := context.Background()
	a, err := p.Acquire(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Grow(30); err != nil {
		t.Fatalf("grow within the pool: %v", err)
	}
	if err := Grow(NewContext(ctx, a), 20); !errors.Is(err, ErrExhausted) {
		t.Fatalf("grow past the pool: %v, want ErrExhausted", err)
	}
	if a.Held() != 90 {
		t.Fatalf("held %d, want 90", a.Held())
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(short, 20); err == nil {
		t.Fatal("acquired 20 bytes of a pool holding 90 of 100")
	}
	a.Release()
	a.Release() // idempotent
	b, err := p.Acquire(ctx, 100)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Release()
	if _, err := p.Acquire(ctx, 101); !errors.Is(err, ErrExhausted) {
		t.Fatalf("acquire over the size: %v, want ErrExhausted", err)
	}
	if err := Grow(ctx, 1<<40); err != nil {
		t.Fatalf("grow without a reservation: %v", err)
	}
}
