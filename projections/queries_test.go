package projections

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
)

// fixture is a small hand-built history:
//
//	v1: folders A and B at the root
//	v2: file f1 in A, file f2 in B, folder C in A
//	v3: f1 changed
//	v4: a commit whose only item failed (nothing stored)
//	v5: f2 moved into C, f1 deleted
//	v6: five new files at the root (bigger than a small page)
//	v7: A renamed
type fixture struct {
	g                   *gen
	w, shared           *wsSim
	a, b, c, f1, f2     domain.ItemID
	n                   []domain.ItemID
	owner, other, third uuid.UUID
	batches             []batch
}

func newFixture(t *testing.T) *fixture {
	g := newGen(t, 1)
	f := &fixture{g: g}
	for range 3 {
		f.batches = append(f.batches, g.user())
	}
	f.owner, f.other, f.third = g.uids[0], g.uids[1], g.uids[2]
	// A shared workspace of `other` that `owner` joins, named so it sorts first by name.
	sh, b := g.workspace(1, true)
	f.shared = sh
	f.batches = append(f.batches, b)
	extra := f.shared.record(t, domain.MemberAdded{PrevHash: sh.prev, WorkspaceID: sh.id, UserID: f.owner, Name: "a share", At: g.tick()})
	f.batches = append(f.batches, batch{sh.stream, []eventstore.Record{extra}})

	w, b := g.workspace(0, false)
	f.w = w
	var recs []eventstore.Record
	A, B := g.newItem(w, nil, true, "A"), g.newItem(w, nil, true, "B")
	f.a, f.b = *A.ID, *B.ID
	recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(A), w.store(B)}))
	F1 := g.newItem(w, itemID(int64(f.a)), false, "f1")
	F2 := g.newItem(w, itemID(int64(f.b)), false, "f2")
	C := g.newItem(w, itemID(int64(f.a)), true, "C")
	f.f1, f.f2, f.c = *F1.ID, *F2.ID, *C.ID
	recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(F1), w.store(F2), w.store(C)}))
	recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(g.next(w, f.f1, domain.StatusChanged))}))
	cur := w.items[f.f2].Clone()
	recs = append(recs, g.committed(w, []domain.ItemOutcome{{CommittedVersion: 7, Reason: domain.ReasonWrongVersion, Metadata: &cur}}))
	mv := g.next(w, f.f2, domain.StatusMoved)
	mv.ParentID = itemID(int64(f.c))
	recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(mv), w.store(g.next(w, f.f1, domain.StatusDeleted))}))
	var outs []domain.ItemOutcome
	for i := range 5 {
		md := g.newItem(w, nil, false, fmt.Sprintf("n%d", i))
		f.n = append(f.n, *md.ID)
		outs = append(outs, w.store(md))
	}
	recs = append(recs, g.committed(w, outs))
	recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(g.next(w, f.a, domain.StatusRenamed))}))
	b.recs = append(b.recs, recs...)
	f.batches = append(f.batches, b)
	return f
}

func ids(items []domain.ItemMetadata) []domain.ItemID {
	out := make([]domain.ItemID, len(items))
	for i, it := range items {
		out[i] = *it.ID
	}
	return out
}

func TestQueriesOnFixture(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t)
	e.append(t, f.batches)
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	ctx := context.Background()

	t.Run("Changes", func(t *testing.T) {
		items, v, err := e.q.Changes(ctx, f.w.id)
		if err != nil {
			t.Fatal(err)
		}
		if v != 7 {
			t.Errorf("version %d, want 7", v)
		}
		want := append([]domain.ItemID{f.a, f.f1, f.c, f.f2, f.b}, f.n...)
		if got := ids(items); !slices.Equal(got, want) {
			t.Fatalf("order %v, want %v", got, want)
		}
		for _, it := range items {
			sim := f.w.items[*it.ID]
			if it.Version != sim.Version || it.Status != sim.Status || it.Filename != sim.Filename ||
				!equalIDPtr(it.ParentID, sim.ParentID) || it.Size != sim.Size || !slices.Equal(it.Chunks, sim.Chunks) ||
				it.WorkspaceID != f.w.id || !it.ModifiedAt.Equal(sim.ModifiedAt) || it.DeviceID != sim.DeviceID {
				t.Errorf("item %d = %+v, want %+v", *it.ID, it, *sim)
			}
		}
		if items[1].Status != domain.StatusDeleted {
			t.Errorf("f1 should be a tombstone, got %s", items[1].Status)
		}
		if _, _, err := e.q.Changes(ctx, uuid.New()); !errors.Is(err, ErrWorkspaceNotFound) {
			t.Errorf("unknown workspace: %v, want ErrWorkspaceNotFound", err)
		}
	})

	t.Run("ChangesSince", func(t *testing.T) {
		type want struct {
			items   []domain.ItemID
			to      int64
			hasMore bool
		}
		cases := []struct {
			since int64
			limit int
			want  want
		}{
			{0, 0, want{append([]domain.ItemID{f.a, f.f1, f.c, f.f2, f.b}, f.n...), 7, false}},
			// v6 alone exceeds the limit: a page of its own.
			{5, 2, want{f.n, 6, true}},
			{6, 2, want{[]domain.ItemID{f.a}, 7, false}},
			// f1 changed at v3 and v5, counted once; v4 stored nothing; v6 does not fit.
			{1, 3, want{[]domain.ItemID{f.f1, f.c, f.f2}, 5, true}},
			// f1 as of v4 (changed, not yet deleted); the page stops before v5.
			{2, 1, want{[]domain.ItemID{f.f1}, 4, true}},
			// v5 has two items over a limit of one: taken whole, ending before v6.
			{4, 1, want{[]domain.ItemID{f.f1, f.f2}, 5, true}},
			{7, 10, want{nil, 7, false}},
			{9, 10, want{nil, 7, false}},
		}
		for _, c := range cases {
			p, err := e.q.ChangesSince(ctx, f.w.id, c.since, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Items); !slices.Equal(got, c.want.items) || p.ToVersion != c.want.to ||
				p.HasMore != c.want.hasMore || p.FromVersion != c.since || p.WorkspaceVersion != 7 {
				t.Errorf("since %d limit %d: items %v to %d more %v from %d ws %d; want %v to %d more %v",
					c.since, c.limit, got, p.ToVersion, p.HasMore, p.FromVersion, p.WorkspaceVersion,
					c.want.items, c.want.to, c.want.hasMore)
			}
		}
		p, err := e.q.ChangesSince(ctx, f.w.id, 2, 1)
		if err != nil {
			t.Fatal(err)
		}
		if p.Items[0].Version != 2 || p.Items[0].Status != domain.StatusChanged {
			t.Errorf("f1 as of v4: version %d %s, want 2 CHANGED", p.Items[0].Version, p.Items[0].Status)
		}
		checkPagingProperties(t, e, f.w.id, historyOf(t, f.batches, f.w.stream))
	})

	t.Run("ItemVersions", func(t *testing.T) {
		vs, err := e.q.ItemVersions(ctx, f.w.id, f.f1)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, fmt.Sprintf("%d:%s", v.Version, v.Status))
		}
		if want := []string{"1:NEW", "2:CHANGED", "3:DELETED"}; !slices.Equal(got, want) {
			t.Errorf("versions %v, want %v", got, want)
		}
		vs, err = e.q.ItemVersions(ctx, f.shared.id, f.f1) // items never show through another workspace
		if err != nil || len(vs) != 0 {
			t.Errorf("f1 through another workspace: %v, %v", vs, err)
		}
	})

	t.Run("Workspaces", func(t *testing.T) {
		ws, err := e.q.WorkspacesOf(ctx, f.owner)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 2 || ws[0].ID != f.w.id || ws[1].ID != f.shared.id {
			t.Fatalf("workspaces of owner: %+v, want personal %s first then %s", ws, f.w.id, f.shared.id)
		}
		if ws[0].LatestRevision != 7 || ws[0].IsShared || ws[0].OwnerID != f.owner || ws[1].Name != "a share" || !ws[1].IsShared {
			t.Errorf("workspaces of owner: %+v", ws)
		}
		ws, err = e.q.WorkspacesOf(ctx, f.other)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 1 || ws[0].Name != "ws 1" || ws[0].ParentItemID != nil {
			t.Errorf("workspaces of other: %+v", ws)
		}
		ws, err = e.q.WorkspacesOf(ctx, f.third)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 1 || ws[0].ID != f.shared.id || ws[0].Name != "renamed share" || ws[0].ParentItemID == nil || *ws[0].ParentItemID != 7 {
			t.Errorf("workspaces of third (renamed, mounted at 7): %+v", ws)
		}
		d, found, err := e.q.Workspace(ctx, f.w.id)
		if err != nil || !found {
			t.Fatalf("workspace: %v %v", found, err)
		}
		if d.OwnerID != f.owner || d.Version != 7 || d.UsedBytes != f.w.used || len(d.Members) != 1 || d.Members[0].UserID != f.owner {
			t.Errorf("workspace %+v (used want %d)", d, f.w.used)
		}
		if _, found, err := e.q.Workspace(ctx, uuid.New()); found || err != nil {
			t.Errorf("unknown workspace: found %v err %v", found, err)
		}
		for _, c := range []struct {
			ws, user uuid.UUID
			want     bool
		}{{f.w.id, f.owner, true}, {f.w.id, f.other, false}, {f.shared.id, f.owner, true}, {f.shared.id, f.third, true}, {f.shared.id, uuid.New(), false}} {
			got, err := e.q.IsMember(ctx, c.ws, c.user)
			if err != nil || got != c.want {
				t.Errorf("IsMember(%s, %s) = %v, %v; want %v", c.ws, c.user, got, err, c.want)
			}
		}
		used, err := e.q.OwnerUsage(ctx, f.owner)
		if err != nil || used != f.w.used {
			t.Errorf("owner usage %d, %v; want %d", used, err, f.w.used)
		}
		used, err = e.q.OwnerUsageExcept(ctx, f.owner, f.w.id)
		if err != nil || used != 0 {
			t.Errorf("owner usage except personal %d, %v; want 0", used, err)
		}
		rm := f.shared.record(t, domain.MemberRemoved{PrevHash: f.shared.prev, WorkspaceID: f.shared.id, UserID: f.third, At: f.g.tick()})
		e.append(t, []batch{{f.shared.stream, []eventstore.Record{rm}}})
		e.caughtUp(t, ModelWorkspaces)
		if ws, err := e.q.WorkspacesOf(ctx, f.third); err != nil || len(ws) != 0 {
			t.Errorf("workspaces of a removed member: %+v %v", ws, err)
		}
		if ok, err := e.q.IsMember(ctx, f.shared.id, f.third); ok || err != nil {
			t.Errorf("removed member IsMember = %v, %v", ok, err)
		}
	})

	t.Run("Accounts", func(t *testing.T) {
		u, found, err := e.q.User(ctx, f.owner)
		if err != nil || !found || u.Email != "User1@example.com" || u.QuotaLimit != 1<<30 || u.Removed {
			t.Fatalf("user: %+v %v %v", u, found, err)
		}
		u3, found, err := e.q.UserByEmail(ctx, "user3@EXAMPLE.com")
		if err != nil || !found || u3.ID != f.third || u3.QuotaLimit != 0 {
			t.Errorf("user by email: %+v %v %v", u3, found, err)
		}
		if _, found, err := e.q.UserByEmail(ctx, "nobody@example.com"); found || err != nil {
			t.Errorf("unknown email: %v %v", found, err)
		}
		us, err := e.q.Users(ctx)
		if err != nil || len(us) != 3 {
			t.Errorf("users: %d %v", len(us), err)
		}
		ds, err := e.q.DevicesOf(ctx, f.owner)
		if err != nil || len(ds) != 1 || ds[0].UserID != f.owner || *ds[0].IP != "10.0.0.1" || ds[0].AppVersion != nil {
			t.Fatalf("devices: %+v %v", ds, err)
		}
		d, found, err := e.q.Device(ctx, ds[0].ID)
		if err != nil || !found || d.ID != ds[0].ID || d.Name != "laptop" || d.OS != "linux" {
			t.Errorf("device: %+v %v %v", d, found, err)
		}
	})

	t.Run("UserRemovedAndDeviceUpdated", func(t *testing.T) {
		c := f.g.users[0]
		ds, _ := e.q.DevicesOf(ctx, f.owner)
		ip := "10.9.9.9"
		recs := []eventstore.Record{
			c.record(t, domain.DeviceUpdated{PrevHash: c.prev, UserID: f.owner, DeviceID: ds[0].ID, Name: "desk", OS: "mac", IP: &ip, At: t0.Add(time.Hour)}),
			c.record(t, domain.UserRemoved{PrevHash: c.prev, UserID: f.owner, At: t0.Add(2 * time.Hour)}),
		}
		e.append(t, []batch{{c.stream, recs}})
		e.caughtUp(t, ModelAccounts)
		d, _, err := e.q.Device(ctx, ds[0].ID)
		if err != nil || d.Name != "desk" || d.OS != "mac" || *d.IP != ip || !d.UpdatedAt.Equal(t0.Add(time.Hour)) || !d.RegisteredAt.Equal(ds[0].RegisteredAt) {
			t.Errorf("updated device: %+v %v", d, err)
		}
		u, _, err := e.q.User(ctx, f.owner)
		if err != nil || !u.Removed {
			t.Errorf("removed user: %+v %v", u, err)
		}
	})

	t.Run("WaitForWorkspaceVersion", func(t *testing.T) {
		if err := e.q.WaitForWorkspaceVersion(ctx, f.w.id, 7); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := e.q.WaitForWorkspaceVersion(short, f.w.id, 8); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait for a version not there: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			done <- e.q.WaitForWorkspaceVersion(ctx, f.w.id, 8)
		}()
		rec := f.g.committed(f.w, []domain.ItemOutcome{f.w.store(f.g.next(f.w, f.b, domain.StatusRenamed))})
		e.append(t, []batch{{f.w.stream, []eventstore.Record{rec}}})
		if err := <-done; err != nil {
			t.Fatalf("wait for v8: %v", err)
		}
	})
}

func equalIDPtr(a, b *domain.ItemID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// versioned is one stored item version with the workspace version that stored it.
type versioned struct {
	wsv int64
	md  domain.ItemMetadata
}

// historyOf decodes the stored item versions of a stream from its batches.
func historyOf(t *testing.T, bs []batch, stream string) []versioned {
	var out []versioned
	for _, b := range bs {
		if b.stream != stream {
			continue
		}
		for _, r := range b.recs {
			ev, err := domain.Decode(r.Type, r.Data)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := ev.(domain.Committed); ok {
				for _, o := range c.Items {
					if o.Stored {
						out = append(out, versioned{c.WorkspaceVersion, *o.Metadata})
					}
				}
			}
		}
	}
	return out
}

// checkPagingProperties pages through the workspace from every since with several
// limits and checks each page against PROTOCOL.md §4 computed from the history:
// coverage, state as of toVersion, once each, the limit rule and its maximality, and
// parents before children.
func checkPagingProperties(t *testing.T, e *env, ws uuid.UUID, hist []versioned) {
	t.Helper()
	var cases []pageCase
	for _, limit := range []int{1, 2, 3, 5, 8, 1000} {
		cases = append(cases, pageCase{limit: limit})
	}
	checkPages(t, e, ws, hist, cases)
}

// pageCase is a page size: items, and estimated bytes (0: the default budget).
type pageCase struct {
	limit int
	bytes int64
}

// estimate is the page walk's size estimate of an item version (pageRangeSQL).
func estimate(md domain.ItemMetadata) int64 {
	n := int64(itemFixedBytes + len(md.Filename) + len(md.Mimetype))
	for _, c := range md.Chunks {
		n += int64(len(c)) + 3
	}
	return n
}

// checkPages checks the pages of every since for each case: PROTOCOL.md §4 (coverage,
// state as of toVersion, once each, parents before children, hasMore), the item limit
// and the byte budget (exceeded only by a page of one version) and maximality (the next
// changed version would have passed one of them).
func checkPages(t *testing.T, e *env, ws uuid.UUID, hist []versioned, cases []pageCase) {
	t.Helper()
	defer func(b int64) { e.q.PageBytes = b }(e.q.PageBytes)
	ctx := context.Background()
	_, current, err := e.q.Changes(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	changedIn := func(from, to int64) map[domain.ItemID]domain.ItemMetadata {
		m := map[domain.ItemID]domain.ItemMetadata{}
		for _, h := range hist {
			if h.wsv > from && h.wsv <= to {
				m[*h.md.ID] = domain.ItemMetadata{}
			}
		}
		for _, h := range hist { // state as of to
			if _, ok := m[*h.md.ID]; ok && h.wsv <= to && h.md.Version > m[*h.md.ID].Version {
				m[*h.md.ID] = h.md
			}
		}
		return m
	}
	versionsIn := func(from, to int64) int {
		vs := map[int64]bool{}
		for _, h := range hist {
			if h.wsv > from && h.wsv <= to {
				vs[h.wsv] = true
			}
		}
		return len(vs)
	}
	bytesOf := func(m map[domain.ItemID]domain.ItemMetadata) int64 {
		var n int64
		for _, md := range m {
			n += estimate(md)
		}
		return n
	}
	for _, c := range cases {
		limit := c.limit
		e.q.PageBytes = cmp.Or(c.bytes, DefaultPageBytes)
		for since := int64(0); since <= current; since++ {
			p, err := e.q.ChangesSince(ctx, ws, since, limit)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("since %d limit %d bytes %d -> to %d", since, limit, e.q.PageBytes, p.ToVersion)
			if p.FromVersion != since || p.WorkspaceVersion != current || p.HasMore != (p.ToVersion < current) {
				t.Fatalf("%s: page header %+v", where, p)
			}
			if since < current && p.ToVersion <= since {
				t.Fatalf("%s: page covers no version", where)
			}
			want := changedIn(since, p.ToVersion)
			if len(p.Items) != len(want) {
				t.Fatalf("%s: %d items, want %d", where, len(p.Items), len(want))
			}
			pos := map[domain.ItemID]int{}
			for i, it := range p.Items {
				w, ok := want[*it.ID]
				if !ok || it.Version != w.Version || it.Status != w.Status || !equalIDPtr(it.ParentID, w.ParentID) {
					t.Fatalf("%s: item %d v%d, want v%d (in range %v)", where, *it.ID, it.Version, w.Version, ok)
				}
				if _, dup := pos[*it.ID]; dup {
					t.Fatalf("%s: item %d twice", where, *it.ID)
				}
				pos[*it.ID] = i
			}
			for i, it := range p.Items {
				if it.ParentID != nil {
					if j, ok := pos[*it.ParentID]; ok && j > i {
						t.Fatalf("%s: item %d before its parent %d", where, *it.ID, *it.ParentID)
					}
				}
			}
			if len(p.Items) > limit && versionsIn(since, p.ToVersion) != 1 {
				t.Fatalf("%s: %d items over limit across %d versions", where, len(p.Items), versionsIn(since, p.ToVersion))
			}
			if b := bytesOf(want); b > e.q.PageBytes && versionsIn(since, p.ToVersion) != 1 {
				t.Fatalf("%s: %d bytes over the budget across %d versions", where, b, versionsIn(since, p.ToVersion))
			}
			if p.HasMore {
				// Maximal: the next changed version would not have fitted.
				next := p.ToVersion + 1
				for versionsIn(p.ToVersion, next) == 0 && next < current {
					next++
				}
				if nx := changedIn(since, next); versionsIn(p.ToVersion, next) > 0 && len(nx) <= limit && bytesOf(nx) <= e.q.PageBytes {
					t.Fatalf("%s: version %d would have fitted", where, next)
				}
			}
		}
	}
}

func TestChangesSinceGenerated(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 7)
	bs := g.history(2, 2, 150)
	e.append(t, bs)
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	for _, w := range g.ws {
		checkPagingProperties(t, e, w.id, historyOf(t, bs, w.stream))
		// Paging from 0 to the end yields the state of getChanges.
		all, v, err := e.q.Changes(context.Background(), w.id)
		if err != nil {
			t.Fatal(err)
		}
		latest := map[domain.ItemID]int64{}
		for since, more := int64(0), true; more; {
			p, err := e.q.ChangesSince(context.Background(), w.id, since, 4)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				latest[*it.ID] = it.Version
			}
			since, more = p.ToVersion, p.HasMore
		}
		if len(latest) != len(all) {
			t.Fatalf("paged %d items, getChanges %d (v%d)", len(latest), len(all), v)
		}
		for _, it := range all {
			if latest[*it.ID] != it.Version {
				t.Fatalf("item %d: paged v%d, getChanges v%d", *it.ID, latest[*it.ID], it.Version)
			}
		}
	}
}

// TestChangesOneSnapshot reads getChanges while commits land: each commit adds one item,
// so a consistent read has exactly as many items as its workspace version.
func TestChangesOneSnapshot(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 3)
	e.append(t, []batch{g.user()})
	w, b := g.workspace(0, false)
	e.append(t, []batch{b})
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	stop := run(t, func(ctx context.Context) error {
		for ctx.Err() == nil {
			rec := g.committed(w, []domain.ItemOutcome{w.store(g.newItem(w, nil, true, "x"))})
			if _, err := e.store.Append(ctx, w.stream, eventstore.Any(), rec); err != nil {
				return err
			}
		}
		return nil
	})
	reads := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		items, v, err := e.q.Changes(context.Background(), w.id)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(items)) != v {
			t.Fatalf("read %d items at version %d", len(items), v)
		}
		reads++
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	_, v, _ := e.q.Changes(context.Background(), w.id)
	t.Logf("%d consistent reads while the workspace grew to version %d", reads, v)
	if v < 2 {
		t.Fatalf("the workspace did not grow during the test (v%d)", v)
	}
}

// TestChangesSinceByteBudget pages generated histories with byte budgets small enough to
// end pages early (one version per page, a few items, a few versions) and checks every
// page keeps PROTOCOL.md §4 and the budget (TestChangesSinceGenerated covers the limit
// alone).
func TestChangesSinceByteBudget(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 5)
	bs := g.history(1, 1, 60)
	e.append(t, bs)
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	w := g.ws[0]
	checkPages(t, e, w.id, historyOf(t, bs, w.stream), []pageCase{
		{limit: 1000, bytes: 1},                  // every page one version
		{limit: 1000, bytes: itemFixedBytes + 1}, // about one item
		{limit: 1000, bytes: 1500},               // a few items
		{limit: 3, bytes: 2500},                  // whichever bound comes first
		{limit: 1000, bytes: 6000},
	})
}

// TestResultTooLarge checks that getChanges and getItemVersions answers whose estimate
// passes MaxResultBytes fail with protocol.ErrResultTooLarge, and fit under a larger bound.
func TestResultTooLarge(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t)
	e.append(t, f.batches)
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	ctx := context.Background()
	all, _, err := e.q.Changes(ctx, f.w.id)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for i := range all {
		size += itemSize(&all[i])
	}
	versions, err := e.q.ItemVersions(ctx, f.w.id, f.f1)
	if err != nil || len(versions) != 3 {
		t.Fatalf("versions of f1: %d, %v", len(versions), err)
	}
	var vsize int64
	for i := range versions {
		vsize += itemSize(&versions[i])
	}
	defer func(b int64) { e.q.MaxResultBytes = b }(e.q.MaxResultBytes)
	for _, tc := range []struct {
		limit         int64
		changes, vers bool // fit
	}{
		{size - 1, false, vsize <= size-1},
		{size, true, vsize <= size},
		{vsize - 1, vsize-1 >= size, false},
		{vsize, vsize >= size, true},
		{1, false, false},
	} {
		e.q.MaxResultBytes = tc.limit
		_, _, err := e.q.Changes(ctx, f.w.id)
		if tc.changes != (err == nil) || (err != nil && !errors.Is(err, protocol.ErrResultTooLarge)) {
			t.Errorf("limit %d (answer %d bytes): getChanges err %v", tc.limit, size, err)
		}
		_, err = e.q.ItemVersions(ctx, f.w.id, f.f1)
		if tc.vers != (err == nil) || (err != nil && !errors.Is(err, protocol.ErrResultTooLarge)) {
			t.Errorf("limit %d (answer %d bytes): getItemVersions err %v", tc.limit, vsize, err)
		}
	}
}

func TestItemSizeBoundsTheJSON(t *testing.T) {
	md := domain.ItemMetadata{ID: itemID(1 << 52), TempID: new(int64(-1 << 52)), Version: 1 << 40,
		ParentID: itemID(1 << 52), ParentVersion: new(int64(1 << 52)), Status: domain.StatusRenamed,
		ModifiedAt: time.Now(), Checksum: -1 << 62, Size: 1 << 62, Filename: "a\x00<\"b\xff",
		Mimetype: "text/&plain", Chunks: []string{"c1", "\\", "ü"}}
	type wireItem struct { // the fields and shapes of wire.ItemMetadata
		ID            *int64   `json:"id"`
		TempID        *int64   `json:"tempId"`
		Version       *int64   `json:"version"`
		DeviceID      string   `json:"deviceId"`
		WorkspaceID   string   `json:"workspaceId"`
		ParentID      *int64   `json:"parentId"`
		ParentVersion *int64   `json:"parentVersion"`
		Status        string   `json:"status"`
		ModifiedAt    string   `json:"modifiedAt"`
		Checksum      int64    `json:"checksum"`
		Chunks        []string `json:"chunks"`
		Size          int64    `json:"size"`
		IsFolder      bool     `json:"isFolder"`
		Filename      string   `json:"filename"`
		Mimetype      string   `json:"mimetype"`
	}
	id := int64(*md.ID)
	b, err := json.Marshal(wireItem{&id, md.TempID, &md.Version, uuid.NewString(), uuid.NewString(), &id, md.ParentVersion,
		string(md.Status), md.ModifiedAt.Format("2006-01-02T15:04:05.000Z07:00"), md.Checksum, md.Chunks, md.Size,
		false, md.Filename, md.Mimetype})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) > itemSize(&md) {
		t.Fatalf("estimate %d below the encoded %d bytes: %s", itemSize(&md), len(b), b)
	}
}
