package service_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
)

// shareEnv is a store with its read model and the ids allocator, and a way to make any
// number of Service instances over them (standing in for several syncd processes).
type shareEnv struct {
	t      *testing.T
	store  eventstore.Store
	reads  service.ReadModel
	ids    *ctxIDs
	limits domain.Limits // zero: the defaults
}

func (e *shareEnv) service(store eventstore.Store) *service.Service {
	e.t.Helper()
	cfg := service.DefaultConfig()
	cfg.Limits = e.limits
	s, err := service.New(cfg, store, e.reads, e.ids)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// forShareStores runs test on the memstore and on the PostgreSQL store.
func forShareStores(t *testing.T, test func(t *testing.T, e *shareEnv)) {
	for _, st := range hotStores {
		t.Run(st.name, func(t *testing.T) {
			store, reads := st.open(t)
			test(t, &shareEnv{t: t, store: store, reads: reads, ids: &ctxIDs{}})
		})
	}
}

// sharer is alice with a device and a tree in her personal workspace: docs/ holding
// a.txt (2 versions) and sub/b.txt, and c.txt at the root; bob and carol are users.
type sharer struct {
	s                 *service.Service
	reads             service.ReadModel
	alice, bob, carol uuid.UUID
	home, dev         uuid.UUID
	docs, a, sub, b   domain.ItemMetadata
	c                 domain.ItemMetadata
}

func newSharer(t *testing.T, e *shareEnv) *sharer {
	ctx := context.Background()
	sh := &sharer{s: e.service(e.store), reads: e.reads}
	var err error
	if sh.alice, sh.home, err = sh.s.CreateUser(ctx, service.NewUser{Name: "alice", Email: "alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	if sh.bob, _, err = sh.s.CreateUser(ctx, service.NewUser{Name: "bob", Email: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	if sh.carol, _, err = sh.s.CreateUser(ctx, service.NewUser{Name: "carol", Email: "carol@example.com"}); err != nil {
		t.Fatal(err)
	}
	dev, err := sh.s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: sh.alice, Name: "laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	sh.dev = dev.ID
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, email := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
			if _, err := sh.s.AccountInfo(ctx, nil, email); err != nil {
				return err
			}
		}
		for _, u := range []uuid.UUID{sh.alice, sh.bob, sh.carol} { // the workspaces model is projected a moment later
			if _, err := sh.s.Workspaces(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	res := sh.commit(t, sh.home, "tree", folder(-1, "docs"), file(-2, "a.txt", ptr(domain.ItemID(-1)), 10),
		folder(-3, "sub"), file(-4, "b.txt", ptr(domain.ItemID(-3)), 20), file(-5, "c.txt", nil, 30))
	got := make([]domain.ItemMetadata, 5)
	for i, o := range res.Event.Items {
		got[i] = *o.Metadata
	}
	sh.docs, sh.a, sh.sub, sh.b, sh.c = got[0], got[1], got[2], got[3], got[4]
	sub := sh.sub
	sub.Version, sub.Status, sub.ParentID, sub.TempID = 2, domain.StatusMoved, sh.docs.ID, nil
	a := sh.a
	a.Version, a.Status, a.Size, a.TempID = 2, domain.StatusChanged, 11, nil
	res = sh.commit(t, sh.home, "move", sub, a)
	sh.sub, sh.a = *res.Event.Items[0].Metadata, *res.Event.Items[1].Metadata
	return sh
}

func (sh *sharer) commit(t *testing.T, ws uuid.UUID, req string, items ...domain.ItemMetadata) service.CommitResult {
	t.Helper()
	res, err := sh.s.Commit(context.Background(), protocol.CommitRequest{RequestID: req, UserID: sh.alice, WorkspaceID: ws,
		DeviceID: sh.dev, Items: items})
	if err != nil {
		t.Fatalf("commit %s: %v", req, err)
	}
	return res
}

func (sh *sharer) share(req string, emails ...string) (service.ShareResult, error) {
	return sh.s.Share(context.Background(), service.ShareRequest{RequestID: req, UserID: sh.alice, ItemID: *sh.docs.ID, Emails: emails})
}

// readChain reads a stream whole, checks that each event carries the chain hash of the
// one before, and returns the decoded events.
func readChain(t *testing.T, store eventstore.Store, stream string) []domain.Event {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), stream, 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	var out []domain.Event
	for _, r := range recs {
		ev, err := domain.Decode(r.Type, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Prev() != prev {
			t.Fatalf("%s@%d: prevHash %q, want %q: the chain is broken", stream, r.StreamVersion, ev.Prev(), prev)
		}
		prev = domain.ChainHash(r.Type, r.Data)
		out = append(out, ev)
	}
	return out
}

func eventTypes(evs []domain.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType()
	}
	return out
}

func TestShareMovesTheFolder(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		sh := newSharer(t, e)
		res, err := sh.share("share-1", "bob@example.com", "Carol@Example.com ", "alice@example.com", "nobody@example.com")
		if err != nil {
			t.Fatal(err)
		}
		S := domain.SharedWorkspaceID(sh.alice, "share-1")
		if res.WorkspaceID != S || res.SourceID != sh.home || res.Replayed || res.MovedOut == nil ||
			!slices.Equal(res.NewMembers, []uuid.UUID{sh.bob, sh.carol}) {
			t.Fatalf("result %+v", res)
		}
		if want := []domain.ItemID{*sh.a.ID, *sh.sub.ID, *sh.b.ID}; !slices.Equal(res.MovedOut.ItemIDs, want) {
			t.Fatalf("moved %v, want %v", res.MovedOut.ItemIDs, want)
		}
		home := readChain(t, e.store, domain.WorkspaceStream(sh.home))
		if last := home[len(home)-1].(domain.ItemsMovedOut); last.WorkspaceVersion != 3 || last.ToWorkspaceID != S {
			t.Fatalf("the source's last event %+v", last)
		}
		shared := readChain(t, e.store, domain.WorkspaceStream(S))
		want := []string{domain.TypeWorkspaceCreated, domain.TypeItemsMovedIn, domain.TypeMemberAdded, domain.TypeMemberAdded}
		if !slices.Equal(eventTypes(shared), want) {
			t.Fatalf("shared workspace events %v, want %v", eventTypes(shared), want)
		}
		// The moved item lives on in S at its next version, and is gone from the source.
		a3 := sh.a
		a3.Version, a3.Status, a3.Size = 3, domain.StatusChanged, 12
		if o := sh.commit(t, sh.home, "after-home", a3).Event.Items[0]; o.Succeeded || o.Reason != domain.ReasonInvalidItem {
			t.Fatalf("commit on a moved item in the source: %+v", o)
		}
		o := sh.commit(t, S, "after-shared", a3).Event.Items[0]
		if !o.Succeeded || !o.Stored || o.Metadata.Version != 3 || o.Metadata.ParentID != nil || o.Metadata.WorkspaceID != S {
			t.Fatalf("commit on a moved item in the shared workspace: %+v", o)
		}
	})
}

func TestShareRetryAndReshare(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		sh := newSharer(t, e)
		first, err := sh.share("share-1", "bob@example.com")
		if err != nil {
			t.Fatal(err)
		}
		homeV := streamVersion(t, e.store, domain.WorkspaceStream(sh.home))
		sharedV := streamVersion(t, e.store, domain.WorkspaceStream(first.WorkspaceID))
		// A retry, from another process too, creates nothing and answers the original.
		for _, s := range []*service.Service{sh.s, e.service(e.store)} {
			again, err := s.Share(context.Background(), service.ShareRequest{RequestID: "share-1", UserID: sh.alice,
				ItemID: *sh.docs.ID, Emails: []string{"bob@example.com"}})
			if err != nil || !again.Replayed || again.WorkspaceID != first.WorkspaceID || again.MovedOut == nil ||
				again.MovedOut.WorkspaceVersion != first.MovedOut.WorkspaceVersion || again.MovedOutID != first.MovedOutID {
				t.Fatalf("retried share: %+v, %v", again, err)
			}
			// Both halves, for the RPC server to publish again.
			if first.MovedIn == nil || again.MovedIn == nil || again.MovedInID != first.MovedInID || again.MovedIn.RequestID != "share-1" {
				t.Fatalf("retried share's move-in: %+v, first %+v", again.MovedIn, first.MovedIn)
			}
		}
		// Sharing the folder again only adds the new members.
		more, err := sh.share("share-2", "bob@example.com", "carol@example.com")
		if err != nil || more.WorkspaceID != first.WorkspaceID || more.MovedOut != nil || !slices.Equal(more.NewMembers, []uuid.UUID{sh.carol}) {
			t.Fatalf("share again: %+v, %v", more, err)
		}
		if v := streamVersion(t, e.store, domain.WorkspaceStream(sh.home)); v != homeV {
			t.Fatalf("share again changed the source: version %d, was %d", v, homeV)
		}
		shared := readChain(t, e.store, domain.WorkspaceStream(first.WorkspaceID))
		if len(shared) != int(sharedV)+1 || shared[len(shared)-1].(domain.MemberAdded).UserID != sh.carol {
			t.Fatalf("shared workspace after sharing again: %v", eventTypes(shared))
		}
	})
}

// TestShareRefusals checks the request-level errors of PROTOCOL.md §8 rule 1 (and the
// e-mail rules): an id that names no item is InvalidRequest; an item of a workspace the
// caller is not a member of is Unauthorized; a folder of a shared workspace the caller is
// a member of is InvalidRequest (nested sharing). None of them writes an event.
func TestShareRefusals(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		ctx := context.Background()
		sh := newSharer(t, e)
		bobsFolder := sh.bobsFolder(t)
		// The lookup reads the read model, which a projector (not inline) fills a moment
		// later: wait until it holds bob's folder.
		testenv.Eventually(t, 20*time.Second, func() error {
			ws, member, err := e.reads.ItemWorkspace(ctx, bobsFolder, sh.alice)
			if err == nil && (ws == uuid.Nil || member) {
				err = fmt.Errorf("bob's folder in the read model: %s, alice a member: %v", ws, member)
			}
			return err
		})
		cases := []struct {
			name string
			req  service.ShareRequest
			err  error
		}{
			{"only unknown e-mails and the caller's own", service.ShareRequest{RequestID: "r1", UserID: sh.alice, ItemID: *sh.docs.ID,
				Emails: []string{"nobody@example.com", "alice@example.com"}}, protocol.ErrUserNotFound},
			{"a file", service.ShareRequest{RequestID: "r2", UserID: sh.alice, ItemID: *sh.c.ID, Emails: []string{"bob@example.com"}}, protocol.ErrInvalid},
			{"an id that names no item", service.ShareRequest{RequestID: "r3", UserID: sh.alice, ItemID: 999_999,
				Emails: []string{"bob@example.com"}}, protocol.ErrInvalid},
			{"an item of another user's workspace", service.ShareRequest{RequestID: "r6", UserID: sh.alice, ItemID: bobsFolder,
				Emails: []string{"carol@example.com"}}, protocol.ErrUnauthorized},
			{"an unknown caller", service.ShareRequest{RequestID: "r4", UserID: uuid.New(), ItemID: *sh.docs.ID,
				Emails: []string{"bob@example.com"}}, protocol.ErrUnauthorized},
			{"an e-mail with a NUL", service.ShareRequest{RequestID: "r5", UserID: sh.alice, ItemID: *sh.docs.ID,
				Emails: []string{"bob\x00@example.com"}}, protocol.ErrInvalid},
		}
		homeV := streamVersion(t, e.store, domain.WorkspaceStream(sh.home))
		for _, c := range cases {
			head := storeHead(t, e.store)
			_, err := sh.s.Share(ctx, c.req)
			if !errors.Is(err, c.err) || (c.err == protocol.ErrInvalid && errors.Is(err, protocol.ErrUnauthorized)) {
				t.Fatalf("%s: %v, want %v", c.name, err, c.err)
			}
			noEventsAfter(t, e.store, head, c.name)
			target := domain.WorkspaceStream(domain.SharedWorkspaceID(c.req.UserID, c.req.RequestID))
			if v, tv := streamVersion(t, e.store, domain.WorkspaceStream(sh.home)), streamVersion(t, e.store, target); v != homeV || tv != 0 {
				t.Fatalf("%s: the source at version %d (was %d), the target at %d", c.name, v, homeV, tv)
			}
		}
		// Nested: once docs is shared, its subfolder is no longer in the personal workspace.
		if _, err := sh.share("share-1", "bob@example.com"); err != nil {
			t.Fatal(err)
		}
		S := domain.SharedWorkspaceID(sh.alice, "share-1")
		testenv.Eventually(t, 20*time.Second, func() error {
			ws, member, err := e.reads.ItemWorkspace(ctx, *sh.sub.ID, sh.alice)
			if err == nil && (ws != S || !member) {
				err = fmt.Errorf("sub in the read model: %s, alice a member: %v", ws, member)
			}
			return err
		})
		head := storeHead(t, e.store)
		_, err := sh.s.Share(ctx, service.ShareRequest{RequestID: "nested", UserID: sh.alice, ItemID: *sh.sub.ID,
			Emails: []string{"carol@example.com"}})
		if !errors.Is(err, protocol.ErrInvalid) || errors.Is(err, protocol.ErrUnauthorized) {
			t.Fatalf("sharing a folder of the shared workspace: %v", err)
		}
		// carol is no member of S: the same folder is Unauthorized for her.
		_, err = sh.s.Share(ctx, service.ShareRequest{RequestID: "carol", UserID: sh.carol, ItemID: *sh.sub.ID,
			Emails: []string{"bob@example.com"}})
		if !errors.Is(err, protocol.ErrUnauthorized) {
			t.Fatalf("carol sharing a folder of a workspace she is not a member of: %v", err)
		}
		noEventsAfter(t, e.store, head, "nested")
	})
}

// storeHead returns the position of the store's last event in the global order.
func storeHead(t *testing.T, store eventstore.Store) eventstore.Position {
	t.Helper()
	var head eventstore.Position
	for {
		recs, err := store.ReadAll(context.Background(), head, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return head
		}
		head = recs[len(recs)-1].Position
	}
}

// noEventsAfter fails if the store holds any event after head.
func noEventsAfter(t *testing.T, store eventstore.Store, head eventstore.Position, what string) {
	t.Helper()
	recs, err := store.ReadAll(context.Background(), head, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) > 0 {
		t.Fatalf("%s: a refused share wrote %d event(s), the first %s in %s", what, len(recs), recs[0].Type, recs[0].Stream)
	}
}

// bobsFolder makes a folder in bob's personal workspace and returns its id.
func (sh *sharer) bobsFolder(t *testing.T) domain.ItemID {
	t.Helper()
	ctx := context.Background()
	dev, err := sh.s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg-bob", UserID: sh.bob, Name: "phone", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	wss, err := sh.s.Workspaces(ctx, sh.bob)
	if err != nil || len(wss) == 0 {
		t.Fatalf("bob's workspaces: %v %v", wss, err)
	}
	res, err := sh.s.Commit(ctx, protocol.CommitRequest{RequestID: "bob-1", UserID: sh.bob, WorkspaceID: wss[0].ID,
		DeviceID: dev.ID, Items: []domain.ItemMetadata{folder(-1, "bobs")}})
	if err != nil || !res.Event.Items[0].Succeeded {
		t.Fatalf("bob's commit: %+v %v", res, err)
	}
	return *res.Event.Items[0].Metadata.ID
}

// singleStreamStore hides the multi-stream append of the store it wraps, and declares
// why, as the EventStoreDB backend does.
type singleStreamStore struct{ eventstore.Store }

func (singleStreamStore) Unsupported() map[eventstore.Capability]string {
	return map[eventstore.Capability]string{eventstore.CapMultiStreamAppend: "appends one stream per call"}
}

// On a store without atomic multi-stream appends, a share is refused with a clear error
// before anything is decided or written.
func TestShareRefusedWithoutMultiStreamAppend(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		sh := newSharer(t, e)
		homeV := streamVersion(t, e.store, domain.WorkspaceStream(sh.home))
		s := e.service(singleStreamStore{e.store})
		_, err := s.Share(context.Background(), service.ShareRequest{RequestID: "share-1", UserID: sh.alice, ItemID: *sh.docs.ID,
			Emails: []string{"bob@example.com"}})
		if !errors.Is(err, service.ErrSharingUnsupported) || !errors.Is(err, eventstore.ErrUnsupported) {
			t.Fatalf("share on a single-stream store: %v, want ErrSharingUnsupported", err)
		}
		if v := streamVersion(t, e.store, domain.WorkspaceStream(sh.home)); v != homeV {
			t.Fatalf("the refused share changed the source: version %d, was %d", v, homeV)
		}
		if v := streamVersion(t, e.store, domain.WorkspaceStream(domain.SharedWorkspaceID(sh.alice, "share-1"))); v != 0 {
			t.Fatalf("the refused share created the workspace: version %d", v)
		}
	})
}

// A commit racing the share on a moved item, from another process, ends either before
// the move (and its version moves with the item) or after it (refused in the source with
// invalidItem): never both, never lost.
func TestShareRacesACommit(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		sh := newSharer(t, e)
		other := e.service(e.store)
		ctx := context.Background()
		var wg sync.WaitGroup
		var shareErr, commitErr error
		var committed service.CommitResult
		var shared service.ShareResult
		b2 := sh.b
		b2.Version, b2.Status, b2.Size, b2.TempID = 2, domain.StatusChanged, 21, nil
		wg.Add(2)
		go func() {
			defer wg.Done()
			shared, shareErr = sh.share("share-1", "bob@example.com")
		}()
		go func() {
			defer wg.Done()
			committed, commitErr = other.Commit(ctx, protocol.CommitRequest{RequestID: "race", UserID: sh.alice, WorkspaceID: sh.home,
				DeviceID: sh.dev, Items: []domain.ItemMetadata{b2}})
		}()
		wg.Wait()
		if shareErr != nil || commitErr != nil {
			t.Fatalf("share: %v; commit: %v", shareErr, commitErr)
		}
		o := committed.Event.Items[0]
		var movedIn domain.ItemsMovedIn
		for _, ev := range readChain(t, e.store, domain.WorkspaceStream(shared.WorkspaceID)) {
			if in, ok := ev.(domain.ItemsMovedIn); ok {
				movedIn = in
			}
		}
		var versions int
		for _, it := range movedIn.Items {
			if it.ID == *sh.b.ID {
				versions = len(it.Versions)
			}
		}
		switch {
		case o.Succeeded && o.Stored:
			if versions != 2 || committed.Event.WorkspaceVersion >= shared.MovedOut.WorkspaceVersion {
				t.Fatalf("the commit won (workspace version %d, the move %d) but %d versions moved",
					committed.Event.WorkspaceVersion, shared.MovedOut.WorkspaceVersion, versions)
			}
		case o.Reason == domain.ReasonInvalidItem:
			if versions != 1 || committed.Event.WorkspaceVersion <= shared.MovedOut.WorkspaceVersion {
				t.Fatalf("the commit lost (workspace version %d, the move %d) but %d versions moved",
					committed.Event.WorkspaceVersion, shared.MovedOut.WorkspaceVersion, versions)
			}
		default:
			t.Fatalf("the racing commit: %+v", o)
		}
		t.Logf("the commit %s", map[bool]string{true: "came first", false: "came second"}[o.Succeeded])
	})
}

func streamVersion(t *testing.T, store eventstore.Store, stream string) uint64 {
	t.Helper()
	v, err := store.StreamVersion(context.Background(), stream)
	if err != nil {
		t.Fatalf("version of %s: %v", stream, err)
	}
	return v
}

// lostOutcomeStore stores the first multi append and then reports a transient failure,
// as a connection lost during COMMIT would.
type lostOutcomeStore struct {
	eventstore.Store
	lied bool
}

func (l *lostOutcomeStore) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	res, err := l.Store.(eventstore.MultiAppender).AppendMulti(ctx, appends)
	if err == nil && !l.lied {
		l.lied = true
		return nil, eventstore.TransientError(errors.New("connection lost during commit"))
	}
	return res, err
}

// A share whose append was stored but whose outcome was lost is retried safely: the
// retry finds it stored, nothing is written twice, and the answer is the stored share.
func TestShareLostOutcomeIsRetriedSafely(t *testing.T) {
	forShareStores(t, func(t *testing.T, e *shareEnv) {
		sh := newSharer(t, e)
		homeV := streamVersion(t, e.store, domain.WorkspaceStream(sh.home))
		lying := &lostOutcomeStore{Store: e.store}
		res, err := e.service(lying).Share(context.Background(), service.ShareRequest{RequestID: "share-1", UserID: sh.alice,
			ItemID: *sh.docs.ID, Emails: []string{"bob@example.com"}})
		if err != nil || !lying.lied || res.MovedOut == nil || res.WorkspaceID != domain.SharedWorkspaceID(sh.alice, "share-1") {
			t.Fatalf("share with a lost outcome: %+v, %v (lied %v)", res, err, lying.lied)
		}
		if v := streamVersion(t, e.store, domain.WorkspaceStream(sh.home)); v != homeV+1 {
			t.Fatalf("source at version %d, want %d: one ItemsMovedOut", v, homeV+1)
		}
		if n := len(readChain(t, e.store, domain.WorkspaceStream(res.WorkspaceID))); n != 3 {
			t.Fatalf("shared workspace holds %d events, want 3", n)
		}
	})
}

// With the read models written in the append's own transaction (syncd's default), the
// share's multi-stream append carries the inline hook for both streams: the events are
// stored inline, and the new member sees the shared workspace as soon as Share returns.
func TestShareWithInlineReadModels(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: e.dsn, Inline: projections.Inline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sh := newSharer(t, &shareEnv{t: t, store: store, reads: e.q, ids: &ctxIDs{}})
	res, err := sh.share("share-1", "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := sh.s.Workspaces(ctx, sh.bob)
	if err != nil || !slices.ContainsFunc(ws, func(w protocol.WorkspaceInfo) bool { return w.ID == res.WorkspaceID && w.IsShared }) {
		t.Fatalf("bob's workspaces right after the share: %+v, %v", ws, err)
	}
	for _, stream := range []string{domain.WorkspaceStream(sh.home), domain.WorkspaceStream(res.WorkspaceID)} {
		recs, err := store.ReadStream(ctx, stream, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Inline {
				t.Fatalf("%s@%d (%s) was not written inline", stream, r.StreamVersion, r.Type)
			}
		}
	}
}
