package service_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/service"
)

// Config.OnCommitted hears of every commit the process appended, once, in
// workspaceVersion order, alone or in a batch; each names the position of the stream's
// event before it (Prev) and of the latest membership change (MembersAt), as stored. A
// repeated request appends nothing and is not told again.
func TestOnCommittedInOrderWithPositions(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		var mu sync.Mutex
		var got []service.AppendedCommit
		s := h.service(h.gate, func(c *service.Config) {
			c.OnCommitted = func(_ context.Context, ac service.AppendedCommit) {
				mu.Lock()
				got = append(got, ac)
				mu.Unlock()
			}
		})
		h.s = s
		lead := h.holdLead() // the next commits queue behind it and go as one batch
		const n = 8
		outs := make([]<-chan commitOut, n)
		for i := range n {
			outs[i] = commitAsync(withIDs(context.Background(), int64(i+1)*1000), s,
				h.req(fmt.Sprintf("c-%d", i), file(int64(-10-i), fmt.Sprintf("c-%d.txt", i), nil, 1)))
		}
		h.waitQueued(s, n)
		h.open()
		recv(t, "lead", lead)
		for i := range n {
			if o := recv(t, fmt.Sprint(i), outs[i]); o.err != nil {
				t.Fatal(o.err)
			}
		}
		if o := recv(t, "repeat", commitAsync(context.Background(), s, h.req("c-0"))); o.err != nil || !o.res.Replayed {
			t.Fatalf("repeat: %+v", o)
		}

		recs, err := h.store.ReadStream(context.Background(), domain.WorkspaceStream(h.ws), 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]int{}
		var membersAt eventstore.Position
		for i, r := range recs {
			byID[r.ID.String()] = i
			if r.Type == domain.TypeWorkspaceCreated || r.Type == domain.TypeMemberAdded {
				membersAt = r.Position
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != n+1 {
			t.Fatalf("OnCommitted called %d times, want %d (the lead and %d queued)", len(got), n+1, n)
		}
		for k, ac := range got {
			i, ok := byID[ac.EventID.String()]
			if !ok {
				t.Fatalf("OnCommitted of an event not in the stream: %s", ac.EventID)
			}
			if k > 0 && ac.Event.WorkspaceVersion != got[k-1].Event.WorkspaceVersion+1 {
				t.Fatalf("call %d: workspaceVersion %d after %d", k, ac.Event.WorkspaceVersion, got[k-1].Event.WorkspaceVersion)
			}
			// Commits appended together share the append's (last) position; a consumer
			// waiting for Prev to pass may wait a little longer, never less.
			if ac.Position.Less(recs[i].Position) || ac.Prev.Less(recs[i-1].Position) || ac.Position.Less(ac.Prev) {
				t.Fatalf("call %d (stream version %d): position %s prev %s, stored %s after %s",
					k, i+1, ac.Position, ac.Prev, recs[i].Position, recs[i-1].Position)
			}
			if k == 0 && (ac.Position != recs[i].Position || ac.Prev != recs[i-1].Position) {
				t.Fatalf("the lead commit, appended alone: position %s prev %s, stored %s after %s",
					ac.Position, ac.Prev, recs[i].Position, recs[i-1].Position)
			}
			if ac.MembersAt != membersAt {
				t.Fatalf("call %d: MembersAt %s, the stream's membership change is at %s", k, ac.MembersAt, membersAt)
			}
		}
	})
}

// The wake after an append (Config.OnAppend) comes after Config.OnCommitted heard of
// its commits: a follower woken by it (the notifier) then finds the direct publisher's
// publish registered (notify.Direct.Ahead) instead of publishing the commit a second
// time.
func TestOnAppendAfterOnCommitted(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		var mu sync.Mutex
		var calls []string
		note := func(what string) {
			mu.Lock()
			calls = append(calls, what)
			mu.Unlock()
		}
		s := h.service(h.gate, func(c *service.Config) {
			c.OnCommitted = func(context.Context, service.AppendedCommit) { note("committed") }
			c.OnAppend = func() { note("append") }
		})
		h.s = s
		if o := recv(t, "commit", commitAsync(context.Background(), s, h.req("c", file(-1, "c.txt", nil, 1)))); o.err != nil {
			t.Fatal(o.err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(calls) != 2 || calls[0] != "committed" || calls[1] != "append" {
			t.Fatalf("hooks called %v, want [committed append]", calls)
		}
	})
}
