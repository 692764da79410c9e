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
	BusyInFlightBytes = "in_flight_bytes" // MaxInFlightBytes has no room for the answer
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

// anonymous is the user of requests that name none.
const anonymous = "anonymous"

// userKey is whom a delivery counts against for PerUserInFlight: the broker-verified
// user_id; in trust mode without one, the body's userId (read without the rest of the
// request's checks); else anonymous.
func (s *Server) userKey(d *amqp.Delivery) string {
	if id, err := uuid.Parse(d.UserId); err == nil {
		return id.String()
	}
	if s.cfg.Auth != AuthTrust {
		return anonymous
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

// userLimiter admits each user's requests: at most max handled at once and at most
// queued more waiting, in arrival order, for one of those places.
type userLimiter struct {
	max, queued int // max <= 0: no bound
	mu          sync.Mutex
	users       map[string]*userSlots
}

// userSlots is one user's admitted requests: held places and the waiters, first come
// first served.
type userSlots struct {
	held    int
	waiting []chan struct{}
}

func newUserLimiter(perUser, queued int) *userLimiter {
	return &userLimiter{max: perUser, queued: max(queued, 0), users: map[string]*userSlots{}}
}

// granted is the ticket of a request admitted straight to a place.
var granted = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// enter admits a request of user, unless the user already has max places held and
// queued waiting. The ticket is closed once the request holds a place: at once, or
// when an earlier request of the user leaves (in the order enter was called). An
// admitted request ends with leave once it held its place, or with abandon.
func (l *userLimiter) enter(user string) (ticket chan struct{}, ok bool) {
	if l.max <= 0 {
		return granted, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[user]
	if u == nil {
		u = &userSlots{}
		l.users[user] = u
	}
	switch {
	case u.held < l.max:
		u.held++
		return granted, true
	case len(u.waiting) < l.queued:
		t := make(chan struct{})
		u.waiting = append(u.waiting, t)
		return t, true
	}
	return nil, false
}

// leave gives up a held place: to the user's first waiter, if any.
func (l *userLimiter) leave(user string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[user]
	if len(u.waiting) > 0 {
		close(u.waiting[0])
		u.waiting = u.waiting[1:]
		return
	}
	if u.held--; u.held == 0 {
		delete(l.users, user)
	}
}

// abandon ends an admitted request that stopped waiting (its session ended): it leaves
// the queue, or gives up the place it was granted meanwhile.
func (l *userLimiter) abandon(user string, ticket chan struct{}) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	u := l.users[user]
	for i, t := range u.waiting {
		if t == ticket {
			u.waiting = append(u.waiting[:i], u.waiting[i+1:]...)
			l.mu.Unlock()
			return
		}
	}
	l.mu.Unlock()
	l.leave(user) // granted meanwhile
}

// replayGate lets a replayed commit's notification be republished at most once per
// (workspace, requestId) within a window.
type replayGate struct {
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	last      map[replayKey]time.Time // when each was last republished (or is being)
	nextPrune int
}

type replayKey struct {
	ws        uuid.UUID
	requestID string
}

func newReplayGate(window time.Duration) *replayGate {
	return &replayGate{window: window, now: time.Now, last: map[replayKey]time.Time{}, nextPrune: 1024}
}

// claim reports whether the notification of (ws, requestID) may be republished now,
// and if so records it; release undoes a claim whose republish failed.
func (g *replayGate) claim(ws uuid.UUID, requestID string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := replayKey{ws, requestID}
	if t, ok := g.last[k]; ok && now.Sub(t) < g.window {
		return false
	}
	g.last[k] = now
	if len(g.last) >= g.nextPrune {
		for k, t := range g.last {
			if now.Sub(t) >= g.window {
				delete(g.last, k)
			}
		}
		g.nextPrune = max(1024, 2*len(g.last))
	}
	return true
}

func (g *replayGate) release(ws uuid.UUID, requestID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.last, replayKey{ws, requestID})
}
