package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// shareFixture appends, as the service does, a share of folder 7 of owner's personal
// workspace w into a new workspace s with member: W's ItemsMovedOut and S's
// WorkspaceCreated, ItemsMovedIn and MemberAdded in one atomic multi append.
type shareFixture struct {
	owner, member, w, s     uuid.UUID
	out, created, in, added eventstore.Record
}

func appendShare(t *testing.T, st eventstore.Store) shareFixture {
	t.Helper()
	f := shareFixture{owner: uuid.New(), member: uuid.New(), w: uuid.New(), s: uuid.New()}
	appendEvent(t, st, domain.UserStream(f.owner), domain.UserCreated{UserID: f.owner, Name: "Olivia", Email: "o@x"})
	appendEvent(t, st, domain.WorkspaceStream(f.w), domain.WorkspaceCreated{WorkspaceID: f.w, Name: "home", OwnerID: f.owner})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	id8 := domain.ItemID(8)
	item := domain.ItemMetadata{ID: &id8, Version: 2, WorkspaceID: f.s, Status: domain.StatusChanged, Filename: "a.txt", Chunks: []string{}, ModifiedAt: at}
	rec := func(e domain.Event) eventstore.Record {
		typ, data, err := domain.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Record{ID: uuid.New(), Type: typ, Data: data}
	}
	f.out = rec(domain.ItemsMovedOut{WorkspaceID: f.w, WorkspaceVersion: 1, RequestID: "share-1", UserID: f.owner, At: at,
		ToWorkspaceID: f.s, FolderID: 7, ItemIDs: []domain.ItemID{8}})
	f.created = rec(domain.WorkspaceCreated{WorkspaceID: f.s, Name: "Photos", OwnerID: f.owner, IsShared: true, IsEncrypted: true, At: at})
	f.in = rec(domain.ItemsMovedIn{WorkspaceID: f.s, WorkspaceVersion: 1, RequestID: "share-1", UserID: f.owner, At: at,
		FromWorkspaceID: f.w, FolderID: 7, Items: []domain.MovedItem{{ID: 8, Versions: []domain.ItemMetadata{item}}}})
	f.added = rec(domain.MemberAdded{WorkspaceID: f.s, UserID: f.member, Name: "Photos", At: at})
	_, err := st.(eventstore.MultiAppender).AppendMulti(ctxT(t), []eventstore.StreamAppend{
		{Stream: domain.WorkspaceStream(f.w), Expected: eventstore.Any(), Records: []eventstore.Record{f.out}},
		{Stream: domain.WorkspaceStream(f.s), Expected: eventstore.Any(), Records: []eventstore.Record{f.created, f.in, f.added}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// message decodes one event message: its method and its single parameter.
func decodeEvent(t *testing.T, body []byte) (string, map[string]any) {
	t.Helper()
	var ev struct {
		Method string           `json:"method"`
		Params []map[string]any `json:"params"`
		Async  bool             `json:"async"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || len(ev.Params) != 1 || !ev.Async {
		t.Fatalf("undecodable event %s: %v", body, err)
	}
	return ev.Method, ev.Params[0]
}

// waitOne waits until l holds exactly one distinct message (by message id) and returns it decoded.
func waitOne(t *testing.T, l *listener) (string, map[string]any) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		if len(l.all()) == 0 {
			return errors.New("no message yet")
		}
		return nil
	})
	msgs := l.all()
	for _, m := range msgs[1:] {
		if m.MessageId != msgs[0].MessageId {
			t.Fatalf("more than one notification: %s and %s", msgs[0].Body, m.Body)
		}
	}
	return decodeEvent(t, msgs[0].Body)
}

// A share's notifications (PROTOCOL.md §8): movedOut on W, movedIn on S and the
// proposals on the owner's and the member's exchanges; nothing reaches S before the
// horizon (the binder's checkpoint) has passed the whole share, member bindings
// included.
func TestShareNotifications(t *testing.T) {
	e := newEnv(t)
	f := appendShare(t, e.store)
	lw, ls, lo, lm := listen(t, e.amqp, f.w), listen(t, e.amqp, f.s), listen(t, e.amqp, f.owner), listen(t, e.amqp, f.member)
	createdPos, inPos, endPos := positionOf(t, e.store, f.created.ID), positionOf(t, e.store, f.in.ID), positionOf(t, e.store, f.added.ID)

	var mu sync.Mutex
	horizon := inPos // the binder has bound the owner but not yet the member
	cfg := fastConfig(t, e)
	var calls atomic.Int64
	cfg.Horizon = func(context.Context) (eventstore.Position, error) {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		return horizon, nil
	}
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	method, p := waitOne(t, lw)
	mo, _ := p["movedOut"].(map[string]any)
	if method != "notifyCommit" || p["workspaceVersion"] != 1.0 || mo["workspaceId"] != f.s.String() || mo["folderId"] != 7.0 || p["deviceId"] != nil {
		t.Fatalf("W's notification %s %v", method, p)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position.Less(createdPos) || !st.HeldByHorizon {
			return fmt.Errorf("status %+v, want held by the horizon at S's creation", st)
		}
		return nil
	})
	c0 := calls.Load()
	testenv.Eventually(t, 10*time.Second, func() error {
		if calls.Load() < c0+3 {
			return errors.New("waiting for more polls")
		}
		return nil
	})
	if st := n.Status(); !st.Position.Less(inPos) || len(ls.all()) != 0 || len(lo.all()) != 0 {
		t.Fatalf("published into S before the member's queues were bound: position %v (move-in at %v), %d on S, %d to the owner",
			st.Position, inPos, len(ls.all()), len(lo.all()))
	}

	mu.Lock()
	horizon = endPos
	mu.Unlock()
	method, p = waitOne(t, ls)
	items, _ := p["items"].([]any)
	mi, _ := p["movedIn"].(map[string]any)
	if method != "notifyCommit" || p["workspaceVersion"] != 1.0 || len(items) != 1 || mi["fromWorkspaceId"] != f.w.String() {
		t.Fatalf("S's notification %s %v", method, p)
	}
	for who, l := range map[string]*listener{"owner": lo, "member": lm} {
		method, p = waitOne(t, l)
		if method != "notifyShareProposal" || p["workspaceId"] != f.s.String() || p["folderName"] != "Photos" || p["itemId"] != 7.0 ||
			p["ownerId"] != f.owner.String() || p["ownerName"] != "Olivia" || p["isEncrypted"] != true {
			t.Fatalf("%s's proposal %s %v", who, method, p)
		}
	}

	// updateWorkspace and a member's removal go to the member's exchange.
	parent := domain.ItemID(99)
	appendEvent(t, e.store, domain.WorkspaceStream(f.s), domain.MemberWorkspaceUpdated{WorkspaceID: f.s, UserID: f.member,
		RequestID: "u1", Name: "Family photos", ParentItemID: &parent})
	last := appendEvent(t, e.store, domain.WorkspaceStream(f.s), domain.MemberRemoved{WorkspaceID: f.s, UserID: f.member})
	mu.Lock()
	horizon = positionOf(t, e.store, last.ID)
	mu.Unlock()
	testenv.Eventually(t, 20*time.Second, func() error {
		if len(lm.all()) < 3 {
			return fmt.Errorf("%d messages to the member", len(lm.all()))
		}
		return nil
	})
	msgs := lm.all()
	method, p = decodeEvent(t, msgs[1].Body)
	if method != "notifyUpdateWorkspace" || p["workspaceId"] != f.s.String() || p["folderName"] != "Family photos" || p["parentItemId"] != 99.0 {
		t.Fatalf("update %s %v", method, p)
	}
	method, p = decodeEvent(t, msgs[2].Body)
	if method != "notifyUnshare" || p["workspaceId"] != f.s.String() {
		t.Fatalf("unshare %s %v", method, p)
	}
	if len(lo.all()) != 1 {
		t.Fatalf("the owner got %d user events, want the one proposal", len(lo.all()))
	}
}
