package storetest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/eventstore"
)

func testClosed(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, "s", eventstore.Any(), rec("T", "1"))
	c := &collector{}
	stop, done := subscribe(t, s, eventstore.Start, c.handle)
	c.idsOrWait(t)

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	select {
	case <-done:
		if err := stop(); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("running subscription returned %v on close, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("running subscription did not return within 10s of Close")
	}

	ctx := ctxT(t)
	checks := map[string]error{}
	_, checks["Append"] = s.Append(ctx, "s", eventstore.Any(), rec("T", "2"))
	_, checks["ReadStream"] = s.ReadStream(ctx, "s", 1, 10)
	_, checks["StreamVersion"] = s.StreamVersion(ctx, "s")
	_, checks["ReadAll"] = s.ReadAll(ctx, eventstore.Start, 10)
	checks["Subscribe"] = s.Subscribe(ctx, eventstore.Start, func(context.Context, []eventstore.RecordedEvent) error { return nil })
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !errors.Is(checks[n], eventstore.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", n, checks[n])
		}
	}
}
