package rpc

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Reasons for which the server itself answers Busy (BusyMetrics).
const (
	BusyUserInFlight  = "user_in_flight"  // the user has PerUserInFlight requests in flight
	BusyInFlightBytes = "in_flight_bytes" // MaxInFlightBytes or PerUserBytes has no room for the body or the answer
	BusyReadDeadline  = "read_deadline"   // a read outlived RequestTimeout
)

// BusyMetrics is implemented by a Config.Metrics that also counts the requests the
// server refused Busy, by reason (the Busy* constants).
type BusyMetrics interface {
	Busy(reason string)
}

func (s *Server) countBusy(reason string) {
	if m, ok := s.cfg.Metrics.(BusyMetrics); ok {
		m.Busy(reason)
	}
}

// anonymous is the user of requests that name none; anonymousLarge that of trust-mode
// bodies over trustParseMax, whose userId is not read to find their user.
const (
	anonymous      = "anonymous"
	anonymousLarge = "anonymous-large"
	trustParseMax  = 1 << 20
)

// userKey is whom a delivery counts against for PerUserInFlight: the broker-verified
// user_id; in trust mode without one, the body's userId (read without the rest of the
// request's checks) of a body up to 1 MiB; else anonymous.
func (s *Server) userKey(d *amqp.Delivery) string {
	if id, err := uuid.Parse(d.UserId); err == nil {
		return id.String()
	}
	if s.cfg.Auth != AuthTrust {
		return anonymous
	}
	if len(d.Body) > trustParseMax {
		// Reading the body's userId costs its size on the consumer's own goroutine:
		// large unverified bodies share one bucket instead.
		return anonymousLarge
	}
	var env struct {
		Params []struct {
			UserID string `json:"userId"`
		} `json:"params"`
	}
	if json.Unmarshal(d.Body, &env) != nil || len(env.Params) != 1 {
		return anonymous
	}
	if id, err := uuid.Parse(env.Params[0].UserID); err == nil {
		return id.String()
	}
	return anonymous
}

// userLimiter admits each user's requests: at most max handled at once, at most queued
// more waiting in arrival order for one of those places (and at most total waiting
// across users), and at most maxBytes of request bodies taken.
type userLimiter struct {
	max, queued, total int // max <= 0: no bound on counts
	maxBytes           int64
	mu                 sync.Mutex
	waiting            int // across users
	users              map[string]*userSlots
}

// userSlots is one user's admitted requests: held places, the waiters (first come
// first served) and the bytes of their bodies.
type userSlots struct {
	held    int
	waiting []chan struct{}
	bytes   int64
}

// admission is what enter gave one request: its user, its body's bytes and the ticket
// that is closed once it holds a place.
type admission struct {
	user   string
	bytes  int64
	ticket chan struct{}
}

func newUserLimiter(perUser, queued, total int, maxBytes int64) *userLimiter {
	return &userLimiter{max: perUser, queued: max(queued, 0), total: max(total, 0), maxBytes: maxBytes, users: map[string]*userSlots{}}
}

// granted is the ticket of a request admitted straight to a place.
var granted = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// enter admits a request of user whose body has n bytes, unless that would pass the
// user's places and queue, the shared queue or the user's bytes: then it returns the
// reason (BusyUserInFlight or BusyInFlightBytes). Its ticket is closed
// once the request holds a place: at once, or when an earlier request of the user
// leaves (in the order enter was called). An admitted request ends with leave once it
// held its place, or with abandon.
func (l *userLimiter) enter(user string, n int64) (admission, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[user]
	if u == nil {
		u = &userSlots{}
		l.users[user] = u
	}
	a := admission{user: user, bytes: n, ticket: granted}
	refused := ""
	switch {
	case l.maxBytes > 0 && u.bytes+n > l.maxBytes:
		refused = BusyInFlightBytes
	case l.max <= 0 || u.held < l.max:
		u.held++
	case len(u.waiting) < l.queued && l.waiting < l.total:
		a.ticket = make(chan struct{})
		u.waiting = append(u.waiting, a.ticket)
		l.waiting++
	default:
		refused = BusyUserInFlight
	}
	if refused != "" {
		l.forget(user, u)
		return admission{}, refused
	}
	u.bytes += n
	return a, ""
}

// forget drops a user's entry once nothing of theirs is admitted.
func (l *userLimiter) forget(user string, u *userSlots) {
	if u.held == 0 && len(u.waiting) == 0 && u.bytes == 0 {
		delete(l.users, user)
	}
}

// leave ends a request that held its place: the place goes to the user's first
// waiter, if any.
func (l *userLimiter) leave(a admission) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[a.user]
	u.bytes -= a.bytes
	if len(u.waiting) > 0 {
		close(u.waiting[0])
		u.waiting = u.waiting[1:]
		l.waiting--
		return
	}
	u.held--
	l.forget(a.user, u)
}

// abandon ends an admitted request that stopped waiting (its session ended, or the
// server had no bytes for it): it leaves the queue, or gives up the place it was
// granted meanwhile.
func (l *userLimiter) abandon(a admission) {
	l.mu.Lock()
	u := l.users[a.user]
	for i, t := range u.waiting {
		if t == a.ticket {
			u.waiting = append(u.waiting[:i], u.waiting[i+1:]...)
			l.waiting--
			u.bytes -= a.bytes
			l.forget(a.user, u)
			l.mu.Unlock()
			return
		}
	}
	l.mu.Unlock()
	l.leave(a) // granted meanwhile (or at once)
}

// replayGate lets a replayed commit's notification be republished at most once per
// (workspace, requestId) within a window, and at most maxBytes of republished
// notifications per user within a window: a user replaying many large commits cannot
// flood the members' queues either.
type replayGate struct {
	window   time.Duration
	maxBytes int64
	now      func() time.Time

	mu        sync.Mutex
	last      map[replayKey]time.Time // when each was last republished (or is being)
	users     map[string]*replaySpend
	nextPrune int
}

type replayKey struct {
	ws        uuid.UUID
	requestID string
}

// replaySpend is the bytes a user had republished since start (one window).
type replaySpend struct {
	start time.Time
	bytes int64
}

func newReplayGate(window time.Duration, maxBytes int64) *replayGate {
	return &replayGate{window: window, maxBytes: maxBytes, now: time.Now, last: map[replayKey]time.Time{},
		users: map[string]*replaySpend{}, nextPrune: 1024}
}

// recent reports whether the notification of (ws, requestID) was republished within
// the window: a cheap check before the notification is even encoded.
func (g *replayGate) recent(ws uuid.UUID, requestID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.last[replayKey{ws, requestID}]
	return ok && g.now().Sub(t) < g.window
}

// claim reports whether the notification of (ws, requestID), of n bytes, may be
// republished now for user, and if so records it; release undoes a claim whose
// republish failed.
func (g *replayGate) claim(ws uuid.UUID, requestID, user string, n int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := replayKey{ws, requestID}
	if t, ok := g.last[k]; ok && now.Sub(t) < g.window {
		return false
	}
	sp := g.users[user]
	if sp == nil || now.Sub(sp.start) >= g.window {
		sp = &replaySpend{start: now}
		g.users[user] = sp
	}
	if g.maxBytes > 0 && sp.bytes+n > g.maxBytes {
		return false
	}
	sp.bytes += n
	g.last[k] = now
	if len(g.last)+len(g.users) >= g.nextPrune {
		g.prune(now)
	}
	return true
}

// prune forgets what is older than the window.
func (g *replayGate) prune(now time.Time) {
	for k, t := range g.last {
		if now.Sub(t) >= g.window {
			delete(g.last, k)
		}
	}
	for u, sp := range g.users {
		if now.Sub(sp.start) >= g.window {
			delete(g.users, u)
		}
	}
	g.nextPrune = max(1024, 2*(len(g.last)+len(g.users)))
}

func (g *replayGate) release(ws uuid.UUID, requestID, user string, n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.last, replayKey{ws, requestID})
	if sp := g.users[user]; sp != nil {
		sp.bytes = max(0, sp.bytes-n)
	}
}
