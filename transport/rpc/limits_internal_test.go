package rpc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func TestReplayGateWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newReplayGate(30 * time.Second)
	g.now = func() time.Time { return now }
	ws := uuid.New()
	if !g.claim(ws, "r") {
		t.Fatal("first replay not let through")
	}
	now = now.Add(29 * time.Second)
	if g.claim(ws, "r") {
		t.Fatal("a second replay within the window let through")
	}
	if !g.claim(ws, "other") || !g.claim(uuid.New(), "r") {
		t.Fatal("another requestId or workspace held back")
	}
	now = now.Add(time.Second)
	if !g.claim(ws, "r") {
		t.Fatal("a replay after the window held back")
	}
	g.release(ws, "r") // the republish failed: the next replay may try again
	if !g.claim(ws, "r") {
		t.Fatal("a replay after a failed republish held back")
	}
	// Expired entries are pruned as the map grows.
	for i := range 5000 {
		g.claim(ws, fmt.Sprint(i))
		now = now.Add(time.Second)
	}
	if len(g.last) > 2048 {
		t.Fatalf("%d entries kept for a 30 s window", len(g.last))
	}
}

func TestUserLimiter(t *testing.T) {
	l := newUserLimiter(2, 2)
	isOpen := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	enter := func(user string, wantOK, wantGranted bool) chan struct{} {
		t.Helper()
		tk, ok := l.enter(user)
		if ok != wantOK || (ok && isOpen(tk) != wantGranted) {
			t.Fatalf("enter(%s): ok=%v granted=%v, want %v %v", user, ok, ok && isOpen(tk), wantOK, wantGranted)
		}
		return tk
	}
	enter("a", true, true)
	enter("a", true, true)
	w1 := enter("a", true, false) // queued first
	w2 := enter("a", true, false) // queued second
	enter("a", false, false)      // beyond two places and two queued: refused
	enter("b", true, true)        // another user is not held back
	l.leave("a")
	if !isOpen(w1) || isOpen(w2) {
		t.Fatal("a leaving place did not go to the first waiter (and only to it)")
	}
	l.abandon("a", w2) // gives up waiting
	enter("a", true, false)
	l.leave("a") // its place goes to the re-queued one
	l.leave("a")
	l.leave("a")
	l.leave("b")
	if len(l.users) != 0 {
		t.Fatalf("users left: %v", l.users)
	}
	unbounded := newUserLimiter(-1, 0)
	for range 100 {
		if tk, ok := unbounded.enter("a"); !ok || !isOpen(tk) {
			t.Fatal("a negative bound refused or queued")
		}
	}
}

func TestConfigLimits(t *testing.T) {
	c := Config{URL: "amqp://x"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PerUserInFlight != 8 || c.MaxReplyBytes != DefaultMaxReplyBytes || c.MaxInFlightBytes != DefaultMaxInFlightBytes ||
		c.ReplayWindow != 30*time.Second || c.BusyRetryAfter != 500*time.Millisecond {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{URL: "amqp://x", Concurrency: 4}
	if err := c.Validate(); err != nil || c.PerUserInFlight != 2 {
		t.Errorf("Concurrency 4: PerUserInFlight %d, %v", c.PerUserInFlight, err)
	}
	for _, bad := range []Config{
		{URL: "amqp://x", Concurrency: 4, PerUserInFlight: 4},
		{URL: "amqp://x", MaxInFlightBytes: 1 << 20},
		{URL: "amqp://x", MaxReplyBytes: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

type busyCount struct {
	noMetrics
	n map[string]int
}

func (b *busyCount) Busy(reason string) { b.n[reason]++ }

// encodeReply turns a reply the in-flight budget has no room for into Busy, and one
// over MaxReplyBytes into ResultTooLarge, before anything is published.
func TestEncodeReplyBounds(t *testing.T) {
	mets := &busyCount{n: map[string]int{}}
	cfg := Config{URL: "amqp://x", MaxReplyBytes: 2000, Metrics: mets}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	big := strings.Repeat("x", 1500)
	pool := budget.NewPool(3000)
	res, err := pool.Acquire(context.Background(), 2000) // a body
	if err != nil {
		t.Fatal(err)
	}
	ctx := budget.NewContext(context.Background(), res)

	out := outcome{method: "getChanges", id: "1", result: big}
	body := s.encodeReply(ctx, &out)
	if wire.CodeOf(out.err) != wire.CodeBusy || !strings.Contains(string(body), `"Busy"`) || mets.n[BusyInFlightBytes] != 1 {
		t.Fatalf("a reply without room: %v %s", out.err, body)
	}
	out = outcome{method: "getChanges", id: "2", result: big[:500]}
	body = s.encodeReply(ctx, &out)
	if out.err != nil || !strings.Contains(string(body), big[:500]) {
		t.Fatalf("a reply with room: %v %s", out.err, body)
	}
	if res.Held() != 2000+int64(len(body)) {
		t.Fatalf("reservation holds %d, want the body and the reply", res.Held())
	}
	res.Release()
	out = outcome{method: "getChanges", id: "3", result: big + big}
	body = s.encodeReply(context.Background(), &out)
	if wire.CodeOf(out.err) != wire.CodeResultTooLarge || len(body) > cfg.MaxReplyBytes || !strings.Contains(string(body), "ResultTooLarge") {
		t.Fatalf("a reply over MaxReplyBytes: %v %s", out.err, body)
	}
}
