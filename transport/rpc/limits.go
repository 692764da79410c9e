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

// userLimiter counts the requests in flight per user.
type userLimiter struct {
	max int // <= 0: no bound
	mu  sync.Mutex
	n   map[string]int
}

func newUserLimiter(max int) *userLimiter { return &userLimiter{max: max, n: map[string]int{}} }

// enter counts a request of user, unless the user already has max in flight.
func (l *userLimiter) enter(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.n[user] >= l.max {
		return false
	}
	l.n[user]++
	return true
}

// leave uncounts a request that entered.
func (l *userLimiter) leave(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[user] <= 1 {
		delete(l.n, user)
		return
	}
	l.n[user]--
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
