package service_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
)

// The PostgreSQL implementations a server wires into the service.
var (
	_ service.ReadModel   = (*projections.Queries)(nil)
	_ service.IDAllocator = (*itemids.Postgres)(nil)
	_ service.IDAllocator = (*itemids.Memory)(nil)
)

// env is one database with the store, the running projectors and a way to make any
// number of Service instances over it (standing in for several syncd processes).
type env struct {
	dsn   string
	store eventstore.Store
	pool  *pgxpool.Pool
	q     *projections.Queries
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dsn := testenv.PostgresDSN(t)
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := projections.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range []string{projections.ModelWorkspaces, projections.ModelAccounts} {
		p, err := projections.New(projections.Config{Model: m, DSN: dsn, Pool: pool, Source: store, LeaderRetry: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		pool.Close()
		store.Close()
	})
	return &env{dsn: dsn, store: store, pool: pool, q: projections.NewQueries(pool)}
}

func (e *env) service(t *testing.T) *service.Service {
	t.Helper()
	return e.serviceOn(t, e.store)
}

// serviceOn makes a Service over store (the env's store, or a wrapper of it).
func (e *env) serviceOn(t *testing.T, store eventstore.Store) *service.Service {
	t.Helper()
	if err := itemids.Migrate(context.Background(), e.pool); err != nil {
		t.Fatal(err)
	}
	s, err := service.New(service.DefaultConfig(), store, e.q, itemids.NewPostgres(e.pool))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// streamVersion returns a stream's version in the store; an error fails the test.
func (e *env) streamVersion(t *testing.T, stream string) uint64 {
	t.Helper()
	v, err := e.store.StreamVersion(context.Background(), stream)
	if err != nil {
		t.Fatalf("version of %s: %v", stream, err)
	}
	return v
}

// userWithDevice creates a user and registers a device; it waits until the account is
// visible in the read model.
func userWithDevice(t *testing.T, e *env, s *service.Service, name string) (user, personal, device uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	user, personal, err := s.CreateUser(ctx, service.NewUser{Name: name, Email: name + "@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg-" + name, UserID: user, Name: name + "-laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	device = res.ID
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := s.Workspaces(ctx, user)
		return err
	})
	return user, personal, device
}

func folder(tempID int64, name string) domain.ItemMetadata {
	return domain.ItemMetadata{TempID: &tempID, Version: 1, Status: domain.StatusNew, ModifiedAt: time.Unix(1700000000, 0),
		IsFolder: true, Filename: name, Mimetype: "inode/directory", Chunks: []string{}}
}

func file(tempID int64, name string, parent *domain.ItemID, size int64) domain.ItemMetadata {
	return domain.ItemMetadata{TempID: &tempID, Version: 1, Status: domain.StatusNew, ModifiedAt: time.Unix(1700000000, 0),
		ParentID: parent, Filename: name, Mimetype: "text/plain", Size: size, Checksum: 42, Chunks: []string{"c1"}}
}

func TestCommitThenReadsAndReplay(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "alice")

	res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "c1", UserID: user, WorkspaceID: ws, DeviceID: dev,
		Items: []domain.ItemMetadata{folder(-1, "docs"), file(-2, "a.txt", ptr(domain.ItemID(-1)), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed || res.Event.WorkspaceVersion != 1 || len(res.Event.Items) != 2 {
		t.Fatalf("first commit: %+v", res)
	}
	for i, o := range res.Event.Items {
		if !o.Succeeded || !o.Stored {
			t.Fatalf("item %d: %+v", i, o)
		}
	}
	folderID := *res.Event.Items[0].Metadata.ID
	if *res.Event.Items[1].Metadata.ParentID != folderID {
		t.Fatalf("tempId parent not resolved: %+v", res.Event.Items[1].Metadata)
	}

	// A retried copy (same requestId, even from another instance) replays the original.
	again, err := e.service(t).Commit(ctx, protocol.CommitRequest{RequestID: "c1", UserID: user, WorkspaceID: ws, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-9, "other.txt", nil, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.EventID != res.EventID || again.Event.WorkspaceVersion != 1 {
		t.Fatalf("replay: %+v", again)
	}
	// §5: any repeat of a processed requestId replays, whatever its body, an empty one too.
	empty, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "c1", UserID: user, WorkspaceID: ws, DeviceID: dev})
	if err != nil || !empty.Replayed || empty.EventID != res.EventID {
		t.Fatalf("replay with no items: %+v, %v", empty, err)
	}

	testenv.Eventually(t, 10*time.Second, func() error {
		items, err := s.Changes(ctx, user, ws)
		if err != nil {
			return err
		}
		if len(items) != 2 || items[0].Filename != "docs" {
			return fmt.Errorf("getChanges = %+v", items)
		}
		return nil
	})
	page, err := s.ChangesSince(ctx, user, ws, 0, 1000)
	if err != nil || page.WorkspaceVersion != 1 || page.HasMore || len(page.Items) != 2 {
		t.Fatalf("changesSince = %+v, %v", page, err)
	}
	if _, err := s.ChangesSince(ctx, user, ws, 7, 1000); !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("changesSince ahead of the workspace: %v, want InvalidRequest", err)
	}
	// The accounts model has a projector of its own here (no inline projection): it may
	// trail the workspaces model the reads above waited for.
	testenv.Eventually(t, 10*time.Second, func() error {
		acct, err := s.AccountInfo(ctx, &user, "ALICE@example.com")
		if err != nil || acct.QuotaUsed != 10 || acct.UserID != user {
			return fmt.Errorf("account = %+v, %v", acct, err)
		}
		return nil
	})
}

// PROTOCOL.md §4/§6 and DESIGN invariant 8: requests that fail as a whole record nothing.
func TestRequestLevelRefusalsStoreNothing(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	alice, aliceWS, aliceDev := userWithDevice(t, e, s, "alice")
	bob, _, bobDev := userWithDevice(t, e, s, "bob")
	before, err := e.store.StreamVersion(ctx, domain.WorkspaceStream(aliceWS))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  protocol.CommitRequest
		want error
	}{
		{"non-member", protocol.CommitRequest{RequestID: "x1", UserID: bob, WorkspaceID: aliceWS, DeviceID: bobDev}, protocol.ErrUnauthorized},
		{"device of another user", protocol.CommitRequest{RequestID: "x2", UserID: alice, WorkspaceID: aliceWS, DeviceID: bobDev}, protocol.ErrUnauthorized},
		{"unknown device", protocol.CommitRequest{RequestID: "x3", UserID: alice, WorkspaceID: aliceWS, DeviceID: uuid.New()}, protocol.ErrUnauthorized},
		{"unknown user", protocol.CommitRequest{RequestID: "x4", UserID: uuid.New(), WorkspaceID: aliceWS, DeviceID: aliceDev}, protocol.ErrUnauthorized},
		{"unknown workspace", protocol.CommitRequest{RequestID: "x5", UserID: alice, WorkspaceID: uuid.New(), DeviceID: aliceDev}, protocol.ErrWorkspaceNotFound},
	}
	for _, c := range cases {
		c.req.Items = []domain.ItemMetadata{file(-1, "f", nil, 1)}
		if _, err := s.Commit(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if after := e.streamVersion(t, domain.WorkspaceStream(aliceWS)); after != before {
		t.Fatalf("refused commits appended %d events", after-before)
	}
	if _, err := s.Changes(ctx, bob, aliceWS); !errors.Is(err, protocol.ErrUnauthorized) {
		t.Errorf("bob reads alice's workspace: %v", err)
	}
	if _, err := s.AccountInfo(ctx, &bob, "alice@example.com"); !errors.Is(err, protocol.ErrUserNotFound) {
		t.Errorf("bob reads alice's account: %v", err)
	}
	if _, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "u", UserID: bob, DeviceID: &aliceDev, Name: "x", OS: "y"}); !errors.Is(err, protocol.ErrDeviceNotValid) {
		t.Errorf("bob updates alice's device: %v", err)
	}
}

// conflictCounter is a store that counts the appends refused on the expected version
// (each one is a decide-append attempt the service had to retry), through Append and,
// so that group commit stays on, AppendBatch.
type conflictCounter struct {
	eventstore.Store
	conflicts atomic.Int64
}

func (c *conflictCounter) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, recs ...eventstore.Record) (eventstore.AppendResult, error) {
	res, err := c.Store.Append(ctx, stream, expected, recs...)
	if errors.Is(err, eventstore.ErrWrongVersion) {
		c.conflicts.Add(1)
	}
	return res, err
}

func (c *conflictCounter) AppendBatch(ctx context.Context, appends []eventstore.StreamAppend) []eventstore.BatchResult {
	res := c.Store.(eventstore.BatchAppender).AppendBatch(ctx, appends)
	for _, r := range res {
		if errors.Is(r.Err, eventstore.ErrWrongVersion) {
			c.conflicts.Add(1)
		}
	}
	return res
}

// DESIGN invariants 2 and 3 with several service instances (as several syncd processes):
// workspace versions stay gap-free, and of racing commits of the same item version
// exactly one wins while the others get wrongVersion with the winner's metadata. The
// instances' caches are left at different versions before the race, so at least one
// append is refused on its expected version and retried: the store counts it.
func TestRacingInstances(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, ok := e.store.(eventstore.BatchAppender); !ok {
		t.Fatal("the PostgreSQL store no longer batches: conflictCounter must follow")
	}
	store := &conflictCounter{Store: e.store}
	instances := []*service.Service{e.serviceOn(t, store), e.serviceOn(t, store), e.serviceOn(t, store)}
	user, ws, dev := userWithDevice(t, e, instances[0], "carol")
	res, err := instances[0].Commit(ctx, protocol.CommitRequest{RequestID: "base", UserID: user, WorkspaceID: ws, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-1, "shared.txt", nil, 5)}})
	if err != nil {
		t.Fatal(err)
	}
	id := *res.Event.Items[0].Metadata.ID
	// Instances 1 and 2 each read the workspace and append to it: instance 0 now caches
	// version 1 of a stream at version 3, instance 1 version 2.
	for i, s := range instances[1:] {
		warm, err := s.Commit(ctx, protocol.CommitRequest{RequestID: fmt.Sprintf("warm-%d", i), UserID: user, WorkspaceID: ws, DeviceID: dev,
			Items: []domain.ItemMetadata{file(-1, fmt.Sprintf("other-%d.txt", i), nil, 1)}})
		if err != nil || warm.Event.WorkspaceVersion != int64(i+2) {
			t.Fatalf("warm-up commit %d: %+v, %v", i, warm.Event, err)
		}
	}
	const before = 3 // workspace version before the race
	if n := store.conflicts.Load(); n != 0 {
		t.Fatalf("%d conflicts before the race", n)
	}

	const racers = 12
	var wg sync.WaitGroup
	results := make([]service.CommitResult, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it := file(0, "shared.txt", nil, int64(100+i))
			it.TempID, it.ID, it.Version, it.Status = nil, &id, 2, domain.StatusChanged
			results[i], errs[i] = instances[i%len(instances)].Commit(ctx, protocol.CommitRequest{
				RequestID: fmt.Sprintf("race-%d", i), UserID: user, WorkspaceID: ws, DeviceID: dev, Items: []domain.ItemMetadata{it}})
		}()
	}
	wg.Wait()
	winners := 0
	var winner *domain.ItemMetadata
	seen := map[int64]bool{}
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		seen[results[i].Event.WorkspaceVersion] = true
		if o := results[i].Event.Items[0]; o.Succeeded {
			winners++
			winner = o.Metadata
		}
	}
	if n := store.conflicts.Load(); n == 0 {
		t.Fatal("no append was refused on its expected version: the race never exercised the retry")
	}
	if winners != 1 {
		t.Fatalf("%d racers won version 2", winners)
	}
	for i := range racers {
		o := results[i].Event.Items[0]
		if !o.Succeeded && (o.Reason != domain.ReasonWrongVersion || o.Metadata == nil || o.Metadata.Size != winner.Size || o.Metadata.Version != 2) {
			t.Fatalf("loser %d got %+v, want wrongVersion with the winner's metadata %+v", i, o, winner)
		}
	}
	for v := int64(before + 1); v <= before+racers; v++ {
		if !seen[v] {
			t.Fatalf("workspace versions not gap-free: %d missing in %v", v, seen)
		}
	}
	t.Logf("%d appends refused on the expected version and retried", store.conflicts.Load())
}

func TestQuotaExceeded(t *testing.T) {
	e := newEnv(t)
	s := e.service(t)
	ctx := context.Background()
	user, ws, dev := userWithDevice(t, e, s, "dave")
	if err := s.SetQuota(ctx, user, 100); err != nil {
		t.Fatal(err)
	}
	res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "q", UserID: user, WorkspaceID: ws, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-1, "a", nil, 60), file(-2, "b", nil, 60)}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Event.Items[0].Succeeded || res.Event.Items[1].Reason != domain.ReasonQuotaExceeded {
		t.Fatalf("outcomes %+v", res.Event.Items)
	}
	if res.Event.LimitQuota != 100 || res.Event.UsedQuota != 60 {
		t.Fatalf("quota fields %d/%d", res.Event.UsedQuota, res.Event.LimitQuota)
	}

	// The owner's usage spans their workspaces: a commit in a second one is refused
	// beyond the limit, and without a limit usedQuota still counts both.
	other, err := s.CreateWorkspace(ctx, user, "second", true)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if used, err := e.q.OwnerUsage(ctx, user); err != nil || used != 60 {
			return fmt.Errorf("owner usage %d, %v", used, err)
		}
		return nil
	})
	res, err = s.Commit(ctx, protocol.CommitRequest{RequestID: "q2", UserID: user, WorkspaceID: other, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-1, "c", nil, 50)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Event.Items[0].Reason != domain.ReasonQuotaExceeded {
		t.Fatalf("second workspace over the owner's limit: %+v", res.Event.Items[0])
	}
	if err := s.SetQuota(ctx, user, 0); err != nil {
		t.Fatal(err)
	}
	res, err = s.Commit(ctx, protocol.CommitRequest{RequestID: "q3", UserID: user, WorkspaceID: other, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-1, "c", nil, 50)}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Event.Items[0].Succeeded || res.Event.LimitQuota != 0 || res.Event.UsedQuota != 110 {
		t.Fatalf("no limit: outcome %+v, quota %d/%d", res.Event.Items[0], res.Event.UsedQuota, res.Event.LimitQuota)
	}
}

func ptr[T any](v T) *T { return &v }

// A process with a cached user state still accepts a device registered a moment ago
// through another process (a negative answer is checked against the stream).
func TestDeviceRegisteredElsewhereIsAcceptedAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.service(t), e.service(t)
	user, ws, dev := userWithDevice(t, e, a, "lena")
	if _, err := b.Commit(ctx, protocol.CommitRequest{RequestID: "warm", UserID: user, WorkspaceID: ws, DeviceID: dev,
		Items: []domain.ItemMetadata{file(-1, "a", nil, 1)}}); err != nil {
		t.Fatal(err) // b now caches the user with one device
	}
	reg, err := a.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "second", UserID: user, Name: "phone", OS: "android"})
	if err != nil {
		t.Fatal(err)
	}
	dev2 := reg.ID
	res, err := b.Commit(ctx, protocol.CommitRequest{RequestID: "from-phone", UserID: user, WorkspaceID: ws, DeviceID: dev2,
		Items: []domain.ItemMetadata{file(-2, "b", nil, 1)}})
	if err != nil || !res.Event.Items[0].Succeeded || res.Event.WorkspaceVersion != 2 {
		t.Fatalf("commit from a device registered elsewhere: %+v, %v", res, err)
	}
}

// Many workspaces committing at once through two instances (group commit shares their
// transactions): every commit is recorded once, each workspace's versions gap-free.
func TestManyWorkspacesAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	instances := []*service.Service{e.service(t), e.service(t)}
	type acct struct{ user, ws, dev uuid.UUID }
	var accts []acct
	for i := range 12 {
		u, ws, d := userWithDevice(t, e, instances[0], fmt.Sprintf("many%d", i))
		accts = append(accts, acct{u, ws, d})
	}
	const perWS = 6
	var wg sync.WaitGroup
	errs := make(chan error, len(accts)*perWS)
	for i, a := range accts {
		for j := range perWS {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := instances[(i+j)%2].Commit(ctx, protocol.CommitRequest{RequestID: fmt.Sprintf("m-%d", j), UserID: a.user,
					WorkspaceID: a.ws, DeviceID: a.dev, Items: []domain.ItemMetadata{file(int64(-1-j), fmt.Sprintf("f%d", j), nil, 1)}})
				if err == nil && !res.Event.Items[0].Succeeded {
					err = fmt.Errorf("item refused: %s", res.Event.Items[0].Reason)
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range accts {
		recs, err := e.store.ReadStream(ctx, domain.WorkspaceStream(a.ws), 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		var versions []int64
		for _, r := range recs {
			ev, err := domain.Decode(r.Type, r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := ev.(domain.Committed); ok {
				versions = append(versions, c.WorkspaceVersion)
			}
		}
		if len(versions) != perWS {
			t.Fatalf("workspace %s recorded %d commits, want %d", a.ws, len(versions), perWS)
		}
		for k, v := range versions {
			if v != int64(k+1) {
				t.Fatalf("workspace %s versions %v", a.ws, versions)
			}
		}
	}
}

// A retried updateDevice (same requestId, the reply was lost) is answered again with the
// same device, also for an update of a registered device (review finding: the store
// recognised the retried event id and the service looped into Busy).
func TestRetriedUpdateDeviceIsAnswered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(t)
	user, _, dev := userWithDevice(t, e, s, "nina")
	upd := protocol.UpdateDeviceRequest{RequestID: "restart-1", UserID: user, DeviceID: &dev, Name: "laptop", OS: "linux"}
	for i := range 3 {
		res, err := s.UpdateDevice(ctx, upd)
		if err != nil || res.ID != dev {
			t.Fatalf("attempt %d: %+v, %v", i, res, err)
		}
	}
	reg := protocol.UpdateDeviceRequest{RequestID: "reg-nina", UserID: user, Name: "laptop", OS: "linux"}
	res, err := e.service(t).UpdateDevice(ctx, reg) // the original registration, retried through another instance
	if err != nil || res.ID != dev {
		t.Fatalf("retried registration: %+v, %v (want %s)", res, err, dev)
	}
}

// A process whose cached workspace predates a membership change made through another
// process still serves the new member (review finding: refusals were decided on the
// cached state without reading the tail).
func TestMemberAddedElsewhereIsServed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.service(t), e.service(t)
	owner, _, ownerDev := userWithDevice(t, e, a, "olga")
	member, _, memberDev := userWithDevice(t, e, a, "pete")
	ws, err := a.CreateWorkspace(ctx, owner, "shared", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx, protocol.CommitRequest{RequestID: "warm", UserID: owner, WorkspaceID: ws, DeviceID: ownerDev,
		Items: []domain.ItemMetadata{file(-1, "a", nil, 1)}}); err != nil {
		t.Fatal(err) // b caches the workspace without pete
	}
	if err := a.AddMember(ctx, ws, member, ""); err != nil {
		t.Fatal(err)
	}
	res, err := b.Commit(ctx, protocol.CommitRequest{RequestID: "pete-1", UserID: member, WorkspaceID: ws, DeviceID: memberDev,
		Items: []domain.ItemMetadata{file(-2, "b", nil, 1)}})
	if err != nil || !res.Event.Items[0].Succeeded {
		t.Fatalf("new member through a stale process: %+v, %v", res, err)
	}
}

// A commit too large for one event is refused as a whole with InvalidRequest (review
// finding: it was Internal, forever).
func TestOversizeCommitIsInvalid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(t)
	user, ws, dev := userWithDevice(t, e, s, "quinn")
	items := make([]domain.ItemMetadata, 2000)
	for i := range items {
		items[i] = file(int64(-1-i), fmt.Sprintf("f%05d", i), nil, 1)
		items[i].Chunks = make([]string, 20)
		for k := range items[i].Chunks {
			items[i].Chunks[k] = fmt.Sprintf("chk-%0120d", i*100+k)
		}
	}
	before := e.streamVersion(t, domain.WorkspaceStream(ws))
	if _, err := s.Commit(ctx, protocol.CommitRequest{RequestID: "huge", UserID: user, WorkspaceID: ws, DeviceID: dev, Items: items}); !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("oversize commit: %v, want InvalidRequest", err)
	}
	if after := e.streamVersion(t, domain.WorkspaceStream(ws)); after != before {
		t.Fatal("an oversize commit changed the workspace")
	}
}

// Two devices (or two members) reusing one requestId make two requests, not a repeat of
// one (second-review finding: the retry key was wider than the domain's dedupe scope).
func TestReusedRequestIDsAcrossDevicesAndMembers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.service(t)
	user, _, devX := userWithDevice(t, e, s, "rosa")
	regY, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg-y", UserID: user, Name: "y", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []uuid.UUID{devX, regY.ID} {
		res, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "1", UserID: user, DeviceID: &dev, Name: "n", OS: "linux"})
		if err != nil || res.ID != dev {
			t.Fatalf("update of %s with requestId 1: %+v, %v", dev, res, err)
		}
	}
	member, _, _ := userWithDevice(t, e, s, "sven")
	ws, err := s.CreateWorkspace(ctx, user, "both", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, ws, member, ""); err != nil {
		t.Fatal(err)
	}
	before := e.streamVersion(t, domain.WorkspaceStream(ws))
	for _, u := range []uuid.UUID{user, member} {
		if err := s.UpdateWorkspace(ctx, protocol.UpdateWorkspaceRequest{RequestID: "1", UserID: u, WorkspaceID: ws, Name: "mine"}); err != nil {
			t.Fatal(err)
		}
	}
	if after := e.streamVersion(t, domain.WorkspaceStream(ws)); after != before+2 {
		t.Fatalf("two members' updateWorkspace with one requestId stored %d events, want 2", after-before)
	}
}
