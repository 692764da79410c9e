package rpc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/budget"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func TestReplayGateWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newReplayGate(30*time.Second, 0)
	g.now = func() time.Time { return now }
	ws := uuid.New()
	if !g.claim(ws, "r", "u", 10) {
		t.Fatal("first replay not let through")
	}
	now = now.Add(29 * time.Second)
	if !g.recent(ws, "r") || g.recent(ws, "other") {
		t.Fatal("recent does not tell a republish within the window")
	}
	if g.claim(ws, "r", "u", 10) {
		t.Fatal("a second replay within the window let through")
	}
	if !g.claim(ws, "other", "u", 10) || !g.claim(uuid.New(), "r", "u", 10) {
		t.Fatal("another requestId or workspace held back")
	}
	now = now.Add(time.Second)
	if !g.claim(ws, "r", "u", 10) {
		t.Fatal("a replay after the window held back")
	}
	g.release(ws, "r", "u", 10) // the republish failed: the next replay may try again
	if !g.claim(ws, "r", "u", 10) {
		t.Fatal("a replay after a failed republish held back")
	}
	// Expired entries are pruned as the map grows.
	for i := range 5000 {
		g.claim(ws, fmt.Sprint(i), fmt.Sprint("u", i%7), 10)
		now = now.Add(time.Second)
	}
	if len(g.last) > 2048 {
		t.Fatalf("%d entries kept for a 30 s window", len(g.last))
	}
}

// A user's replays republish at most maxBytes per window, whatever the requestIds;
// other users are not held back, and the budget is whole again in the next window.
func TestReplayGateBytesPerUser(t *testing.T) {
	now := time.Unix(1000, 0)
	g := newReplayGate(10*time.Second, 100)
	g.now = func() time.Time { return now }
	ws := uuid.New()
	for i := range 4 {
		if !g.claim(ws, fmt.Sprint("r", i), "u", 25) {
			t.Fatalf("replay %d within the user's 100 bytes held back", i)
		}
	}
	if g.claim(ws, "r4", "u", 1) {
		t.Fatal("a replay past the user's bytes let through")
	}
	if !g.claim(ws, "r4", "v", 100) {
		t.Fatal("another user held back")
	}
	g.release(ws, "r3", "u", 25)
	if !g.claim(ws, "r5", "u", 25) {
		t.Fatal("bytes of a failed republish not given back")
	}
	now = now.Add(10 * time.Second)
	if !g.claim(ws, "r6", "u", 100) {
		t.Fatal("the next window's bytes held back")
	}
}

func TestUserLimiter(t *testing.T) {
	isOpen := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	l := newUserLimiter(2, 2, 3, 100)
	enter := func(user string, n int64, want string, wantGranted bool) admission {
		t.Helper()
		a, refused := l.enter(user, n)
		if refused != want || (want == "" && isOpen(a.ticket) != wantGranted) {
			t.Fatalf("enter(%s, %d): refused %q granted=%v, want %q %v", user, n, refused, want == "" && isOpen(a.ticket), want, wantGranted)
		}
		return a
	}
	a1 := enter("a", 10, "", true)
	a2 := enter("a", 10, "", true)
	w1 := enter("a", 10, "", false)           // queued first
	w2 := enter("a", 10, "", false)           // queued second
	enter("a", 10, BusyUserInFlight, false)   // beyond two places and two queued
	b1 := enter("b", 10, "", true)            // another user is not held back
	b2 := enter("b", 10, "", true)            //
	b3 := enter("b", 10, "", false)           // the shared queue's third place
	enter("b", 10, BusyUserInFlight, false)   // the shared queue (3) is full
	enter("c", 101, BusyInFlightBytes, false) // over the user's bytes
	l.leave(a1)
	if !isOpen(w1.ticket) || isOpen(w2.ticket) {
		t.Fatal("a leaving place did not go to the first waiter (and only to it)")
	}
	l.abandon(w2) // gives up waiting
	w3 := enter("a", 10, "", false)
	l.leave(a2) // its place goes to the re-queued one
	if !isOpen(w3.ticket) {
		t.Fatal("the re-queued request did not get the place")
	}
	l.leave(w1)
	l.leave(w3)
	l.abandon(b3)
	l.leave(b1)
	l.leave(b2)
	if len(l.users) != 0 || l.waiting != 0 {
		t.Fatalf("users left: %v, %d waiting", l.users, l.waiting)
	}
	unbounded := newUserLimiter(-1, 0, 0, 0)
	for range 100 {
		if a, refused := unbounded.enter("a", 1<<30); refused != "" || !isOpen(a.ticket) {
			t.Fatal("a negative bound refused or queued")
		}
	}
}

func TestConfigLimits(t *testing.T) {
	c := Config{URL: "amqp://x"}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PerUserInFlight != 8 || c.MaxReplyBytes != DefaultMaxReplyBytes || c.MaxInFlightBytes != DefaultMaxInFlightBytes ||
		c.ReplayWindow != 10*time.Second || c.ReplayBytes != 16<<20 || c.BusyRetryAfter != 500*time.Millisecond ||
		c.PerUserQueued != 32 || c.QueuedTotal != 32 || c.PerUserBytes != DefaultMaxInFlightBytes/4 {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{URL: "amqp://x", Concurrency: 4}.WithDefaults()
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
	cfg := Config{URL: "amqp://x", MaxReplyBytes: 2000, Metrics: mets}.WithDefaults()
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
	// A getChanges reply (an encoded answer, maybe cached) is held to the same bounds,
	// and its buffer is free again once the reply is refused or published.
	encoded := func(pieces ...string) *changesReply {
		var bs [][]byte
		for _, p := range pieces {
			bs = append(bs, []byte(p))
		}
		return &changesReply{head: wire.AppendRawResult(make([]byte, 0, 4096), bs...)}
	}
	free := func(c *changesReply) bool {
		if !c.mu.TryLock() {
			return false
		}
		c.mu.Unlock()
		return true
	}
	c := encoded(`["`+big, big+`"]`)
	out = outcome{method: "getChanges", id: "4", result: c}
	body = s.encodeReply(context.Background(), &out)
	if wire.CodeOf(out.err) != wire.CodeResultTooLarge || len(body) > cfg.MaxReplyBytes || !free(c) {
		t.Fatalf("an encoded reply over MaxReplyBytes: %v %s (buffer free: %v)", out.err, body, free(c))
	}
	res, err = pool.Acquire(context.Background(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	ctx = budget.NewContext(context.Background(), res)
	c = encoded(`"` + big + `"`)
	out = outcome{method: "getChanges", id: "5", result: c}
	if body = s.encodeReply(ctx, &out); wire.CodeOf(out.err) != wire.CodeBusy || mets.n[BusyInFlightBytes] != 2 || !free(c) {
		t.Fatalf("an encoded reply without room: %v %s (buffer free: %v)", out.err, body, free(c))
	}
	c = encoded(`["`, big[:500], `"]`)
	for _, id := range []string{"6", "7"} { // the same answer, twice
		out = outcome{method: "getChanges", id: id, result: c}
		if body = s.encodeReply(context.Background(), &out); out.err != nil || string(body) != `{"result":["`+big[:500]+`"],"id":"`+id+`","idOmq":"ISyncService"}` {
			t.Fatalf("an encoded reply with room: %v %s", out.err, body)
		}
		if free(c) {
			t.Fatal("the buffer of a reply not yet published is free")
		}
		out.done()
		if !free(c) {
			t.Fatal("the buffer of a published reply is still held")
		}
	}
}

// With the server's bytes exhausted, a read's reply is Busy (nothing was done), but a
// write's reply is sent as it is: its work is done, and Busy would say it was not.
func TestWriteRepliesAreNeverBusy(t *testing.T) {
	cfg := Config{URL: "amqp://x"}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	pool := budget.NewPool(64)
	res, ok := pool.TryAcquire(64) // every byte held
	if !ok {
		t.Fatal("acquire the whole pool")
	}
	ctx := budget.NewContext(context.Background(), res)
	for _, c := range []struct {
		method   string
		result   any
		wantBusy bool
	}{
		{wire.MethodUpdateDevice, uuid.New().String(), false},
		{wire.MethodUpdateWorkspace, nil, false},
		{wire.MethodGetWorkspaces, []string{"x"}, true},
		{wire.MethodGetChanges, []string{"x"}, true},
	} {
		out := &outcome{method: c.method, id: "1", result: c.result}
		body := s.encodeReply(ctx, out)
		busy := strings.Contains(string(body), `"Busy"`)
		if busy != c.wantBusy {
			t.Errorf("%s with no bytes left: %s (busy %v, want %v)", c.method, body, busy, c.wantBusy)
		}
	}
}

// Whom a delivery counts against: the verified user_id; in trust mode the body's userId
// of a body up to 1 MiB (a larger one is not parsed on the consumer's goroutine).
func TestUserKey(t *testing.T) {
	u := uuid.New()
	body := []byte(`{"method":"getWorkspaces","params":[{"requestId":"r","userId":"` + u.String() + `"}]}`)
	large := append(append([]byte{}, body[:len(body)-1]...), []byte(strings.Repeat(" ", trustParseMax)+"}")...)
	for _, c := range []struct {
		auth AuthMode
		d    amqp.Delivery
		want string
	}{
		{AuthBroker, amqp.Delivery{UserId: u.String(), Body: body}, u.String()},
		{AuthBroker, amqp.Delivery{Body: body}, anonymous},
		{AuthTrust, amqp.Delivery{Body: body}, u.String()},
		{AuthTrust, amqp.Delivery{Body: large}, anonymousLarge},
		{AuthTrust, amqp.Delivery{Body: []byte("garbage")}, anonymous},
	} {
		s := &Server{cfg: Config{Auth: c.auth}}
		if got := s.userKey(&c.d); got != c.want {
			t.Errorf("auth %v, body of %d bytes, user_id %q: %s, want %s", c.auth, len(c.d.Body), c.d.UserId, got, c.want)
		}
	}
}
