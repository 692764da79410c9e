package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func meta(id, parent int64, ws uuid.UUID, name string, folder bool) domain.ItemMetadata {
	i := domain.ItemID(id)
	m := domain.ItemMetadata{ID: &i, Version: 1, WorkspaceID: ws, Status: domain.StatusNew, Filename: name, IsFolder: folder,
		Chunks: []string{}, ModifiedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if parent != 0 {
		p := domain.ItemID(parent)
		m.ParentID = &p
	}
	return m
}

// Local re-homes a device's items by id on a share (PROTOCOL.md §8 rule 5), from a
// movedOut notification and from a catch-up page's movedOut alike: the moved items go
// to S with what the device holds of them, F's children at S's root, the rest stays.
func TestLocalRehomesOnShare(t *testing.T) {
	w, s := uuid.New(), uuid.New()
	tree := []domain.ItemMetadata{meta(1, 0, w, "docs", true), meta(2, 1, w, "a.txt", false), meta(3, 1, w, "sub", true),
		meta(4, 3, w, "b.txt", false), meta(5, 0, w, "c.txt", false)}
	check := func(t *testing.T, l *client.Local) {
		t.Helper()
		want := map[int64]struct {
			ws     uuid.UUID
			parent int64
		}{1: {w, 0}, 2: {s, 0}, 3: {s, 0}, 4: {s, 3}, 5: {w, 0}}
		for id, x := range want {
			m, ok := l.Item(domain.ItemID(id))
			var parent int64
			if m.ParentID != nil {
				parent = int64(*m.ParentID)
			}
			if !ok || m.WorkspaceID != x.ws || parent != x.parent || m.Filename == "" {
				t.Fatalf("item %d: %+v (held %v), want in %s under %d", id, m, ok, x.ws, x.parent)
			}
		}
		if n := len(l.Workspace(s)); n != 3 {
			t.Fatalf("%d items in S, want 3", n)
		}
	}
	t.Run("notification", func(t *testing.T) {
		l := client.NewLocal()
		l.Apply(client.Update{WorkspaceID: w, FromVersion: 0, ToVersion: 1, Items: tree})
		l.Apply(client.Update{WorkspaceID: w, FromVersion: 1, ToVersion: 2, Commit: &wire.CommitNotification{
			WorkspaceID: w.String(), WorkspaceVersion: 2, Items: []wire.CommitInfo{},
			MovedOut: &wire.MovedOut{WorkspaceID: s.String(), FolderID: 1, ItemIDs: []int64{2, 3, 4}}}})
		check(t, l)
		// The movedIn notification brings S's metadata of the same ids.
		in := tree[1]
		in.WorkspaceID, in.ParentID = s, nil
		wm := wire.FromItem(in)
		l.Apply(client.Update{WorkspaceID: s, FromVersion: 0, ToVersion: 1, Commit: &wire.CommitNotification{
			WorkspaceID: s.String(), WorkspaceVersion: 1, Items: []wire.CommitInfo{{CommittedVersion: 1, CommitSucceed: true, Metadata: &wm}},
			MovedIn: &wire.MovedIn{FromWorkspaceID: w.String()}}})
		check(t, l)
	})
	t.Run("catch-up page", func(t *testing.T) {
		l := client.NewLocal()
		l.Apply(client.Update{WorkspaceID: w, FromVersion: 0, ToVersion: 1, Items: tree})
		l.Apply(client.Update{WorkspaceID: w, FromVersion: 1, ToVersion: 2, Items: []domain.ItemMetadata{},
			MovedOut: []protocol.MovedOutItem{{ID: 2, WorkspaceID: s}, {ID: 3, WorkspaceID: s}, {ID: 4, WorkspaceID: s}}})
		check(t, l)
	})
}

// userEvents collects the user events a subscription delivers.
type userEvents struct {
	mu  sync.Mutex
	evs []client.UserEvent
}

func (u *userEvents) handle(e client.UserEvent) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.evs = append(u.evs, e)
}

func (u *userEvents) all() []client.UserEvent {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]client.UserEvent(nil), u.evs...)
}

// Share and ShareAndWait send createShareProposal: the share reaches the service, a
// request-level error comes back as an *Error; user events reach UserEvents.
func TestShareAndUserEvents(t *testing.T) {
	e := newEnv(t)
	bob := uuid.New()
	e.svc.AddUser(bob, "bob", "bob@example.com")
	c := e.dial()
	ctx := ctxT(t)
	if _, err := c.UpdateDevice(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var users userEvents
	e.subscribe(c, &collector{}, client.SubscribeOptions{UserEvents: users.handle})

	folder := newItem(-1, "docs")
	folder.IsFolder, folder.Checksum, folder.Size, folder.Chunks, folder.Mimetype = true, 0, 0, []string{}, "inode/directory"
	req := &client.CommitRequest{WorkspaceID: e.ws, Items: []domain.ItemMetadata{folder}}
	if err := c.Commit(ctx, req); err != nil {
		t.Fatal(err)
	}
	var docs domain.ItemID
	testenv.Eventually(t, 5*time.Second, func() error {
		res, ok := e.svc.CommitResultOf(e.ws, req.RequestID)
		if !ok {
			return errors.New("commit not recorded yet")
		}
		docs = *res.Event.Items[0].Metadata.ID
		return nil
	})

	if err := c.Share(ctx, &client.ShareRequest{ItemID: docs, Emails: []string{"bob@example.com"}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		wss, err := e.svc.Real().Workspaces(context.Background(), bob)
		if err != nil || len(wss) != 2 || !wss[1].IsShared {
			return fmt.Errorf("bob's workspaces %+v, %v", wss, err)
		}
		return nil
	})
	_, err := c.ShareAndWait(ctx, &client.ShareRequest{ItemID: 999_999, Emails: []string{"bob@example.com"}})
	var ce *client.Error
	if !errors.As(err, &ce) || !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("sharing an id that names no item: %v, want InvalidRequest (PROTOCOL.md §8 rule 1)", err)
	}

	// The server's user events (the test plays the notifier): a proposal, then an unshare.
	conn, err := amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.DeclareEventExchange(ch, e.user); err != nil {
		t.Fatal(err)
	}
	s := uuid.New()
	prop, _ := wire.EncodeNotifyShareProposal(uuid.NewString(), s, "docs", docs, bob, "bob", false)
	unshare, _ := wire.EncodeNotifyUnshare(uuid.NewString(), s)
	for _, body := range [][]byte{prop, unshare} {
		if err := ch.PublishWithContext(ctx, topology.EventExchange(e.user), "", false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(users.all()); n != 2 {
			return fmt.Errorf("%d user events", n)
		}
		return nil
	})
	got := users.all()
	if got[0].ShareProposal == nil || got[0].ShareProposal.WorkspaceID != s.String() || got[0].ShareProposal.ItemID != int64(docs) ||
		got[1].Unshare == nil || got[1].Unshare.WorkspaceID != s.String() {
		t.Fatalf("user events %+v %+v", got[0], got[1])
	}
}
