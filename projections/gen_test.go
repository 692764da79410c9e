package projections

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// The domain's Decide is written elsewhere; these helpers build histories by
// constructing events directly, the way Decide records them.

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// chain tracks a stream's version and chain hash while events are appended to it.
type chain struct {
	stream  string
	version uint64
	prev    string
}

// record encodes e (with the chain's PrevHash already set by the caller) and advances the chain.
func (c *chain) record(t testing.TB, e domain.Event) eventstore.Record {
	typ, data, err := domain.Encode(e)
	if err != nil {
		t.Fatalf("encode %T: %v", e, err)
	}
	c.version++
	c.prev = domain.ChainHash(typ, data)
	// Value as the service sets it: inline appends apply e itself, and the tests that
	// compare them with a rebuild (which decodes Data) hold the two to the same rows.
	return eventstore.Record{ID: uuid.New(), Type: typ, Data: data, Value: e}
}

func itemID(v int64) *domain.ItemID { id := domain.ItemID(v); return &id }

// wsSim simulates a workspace to generate valid commits.
type wsSim struct {
	chain
	id      uuid.UUID
	owner   uuid.UUID
	device  uuid.UUID
	version int64
	items   map[domain.ItemID]*domain.ItemMetadata
	folders []domain.ItemID
	files   []domain.ItemID
	used    int64
}

// gen generates a deterministic history of users, devices, workspaces, members and
// commits.
type gen struct {
	t      testing.TB
	rng    *rand.Rand
	nextID int64
	users  []*chain
	uids   []uuid.UUID
	ws     []*wsSim
	at     time.Time
}

func newGen(t testing.TB, seed uint64) *gen {
	return &gen{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), at: t0}
}

func (g *gen) tick() time.Time { g.at = g.at.Add(time.Second); return g.at }

func (g *gen) uuid() uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(g.rng.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

type batch struct {
	stream string
	recs   []eventstore.Record
}

// user creates a user with one device.
func (g *gen) user() batch {
	uid := g.uuid()
	c := &chain{stream: domain.UserStream(uid)}
	g.users = append(g.users, c)
	g.uids = append(g.uids, uid)
	ip := "10.0.0.1"
	n := len(g.users)
	recs := []eventstore.Record{c.record(g.t, domain.UserCreated{PrevHash: c.prev, UserID: uid, Name: fmt.Sprintf("user %d", n),
		Email: fmt.Sprintf("User%d@example.com", n), QuotaLimit: int64(n) * 1 << 30, At: g.tick()})}
	recs = append(recs, c.record(g.t, domain.DeviceRegistered{PrevHash: c.prev, UserID: uid, DeviceID: g.uuid(), RequestID: "r",
		Name: "laptop", OS: "linux", IP: &ip, At: g.tick()}))
	if n%3 == 0 {
		recs = append(recs, c.record(g.t, domain.UserQuotaChanged{PrevHash: c.prev, UserID: uid, QuotaLimit: 0, At: g.tick()}))
	}
	return batch{c.stream, recs}
}

// workspace creates a workspace owned by users[owner], with members added, renamed and removed.
func (g *gen) workspace(owner int, shared bool) (*wsSim, batch) {
	w := &wsSim{id: g.uuid(), owner: g.uids[owner], device: g.uuid(), items: map[domain.ItemID]*domain.ItemMetadata{}}
	w.chain.stream = domain.WorkspaceStream(w.id)
	g.ws = append(g.ws, w)
	recs := []eventstore.Record{w.record(g.t, domain.WorkspaceCreated{PrevHash: w.prev, WorkspaceID: w.id,
		Name: fmt.Sprintf("ws %d", len(g.ws)), OwnerID: w.owner, IsShared: shared, At: g.tick()})}
	if shared && len(g.uids) > 1 {
		other := g.uids[(owner+1)%len(g.uids)]
		recs = append(recs, w.record(g.t, domain.MemberAdded{PrevHash: w.prev, WorkspaceID: w.id, UserID: other, Name: "shared with me", At: g.tick()}))
		recs = append(recs, w.record(g.t, domain.MemberWorkspaceUpdated{PrevHash: w.prev, WorkspaceID: w.id, UserID: other, RequestID: "u",
			Name: "renamed share", ParentItemID: itemID(7), At: g.tick()}))
		if len(g.uids) > 2 {
			third := g.uids[(owner+2)%len(g.uids)]
			recs = append(recs, w.record(g.t, domain.MemberAdded{PrevHash: w.prev, WorkspaceID: w.id, UserID: third, Name: "gone", At: g.tick()}))
			recs = append(recs, w.record(g.t, domain.MemberRemoved{PrevHash: w.prev, WorkspaceID: w.id, UserID: third, At: g.tick()}))
		}
	}
	return w, batch{w.stream, recs}
}

// committed records a commit of the given outcomes as the workspace's next version.
func (g *gen) committed(w *wsSim, outs []domain.ItemOutcome) eventstore.Record {
	w.version++
	return w.record(g.t, domain.Committed{PrevHash: w.prev, WorkspaceID: w.id, WorkspaceVersion: w.version,
		RequestID: fmt.Sprintf("req-%d", w.version), UserID: w.owner, DeviceID: w.device, CommittedAt: g.tick(),
		Items: outs, UsedQuota: w.used, WorkspaceUsed: w.used})
}

// store records md as the item's next stored version in the simulation.
func (w *wsSim) store(md domain.ItemMetadata) domain.ItemOutcome {
	old := w.items[*md.ID]
	if old != nil {
		w.used -= old.Size
	} else if md.IsFolder {
		w.folders = append(w.folders, *md.ID)
	} else {
		w.files = append(w.files, *md.ID)
	}
	w.used += md.Size
	c := md.Clone()
	w.items[*md.ID] = &c
	return domain.ItemOutcome{CommittedVersion: md.Version, Succeeded: true, Stored: true, Metadata: &c}
}

// newItem makes version 1 of a new item under parent (nil: the root).
func (g *gen) newItem(w *wsSim, parent *domain.ItemID, folder bool, name string) domain.ItemMetadata {
	g.nextID++
	md := domain.ItemMetadata{ID: itemID(g.nextID), TempID: new(int64(-g.nextID)), Version: 1, DeviceID: w.device,
		WorkspaceID: w.id, ParentID: parent, Status: domain.StatusNew, ModifiedAt: g.tick(), IsFolder: folder,
		Filename: name, Chunks: []string{}}
	if !folder {
		md.Size = int64(g.rng.IntN(10000))
		md.Checksum = int64(g.rng.Uint32())
		md.Chunks = []string{fmt.Sprintf("c%x", g.rng.Uint64()), "with,comma \"quoted\" back\\slash {NULL}"}
		md.Mimetype = "text/plain"
	}
	return md
}

// next makes the item's next version with the given status.
func (g *gen) next(w *wsSim, id domain.ItemID, status domain.Status) domain.ItemMetadata {
	md := w.items[id].Clone()
	md.Version++
	md.Status = status
	md.ModifiedAt = g.tick()
	md.TempID = nil
	md.ParentVersion = nil
	switch status {
	case domain.StatusChanged:
		md.Size = int64(g.rng.IntN(10000))
		md.Chunks = []string{fmt.Sprintf("c%x", g.rng.Uint64())}
	case domain.StatusRenamed:
		md.Filename += "-r"
	case domain.StatusMoved:
		if len(w.folders) > 0 {
			md.ParentID = itemID(int64(w.folders[g.rng.IntN(len(w.folders))]))
		} else {
			md.ParentID = nil
		}
	case domain.StatusDeleted:
		md.Size = 0
	}
	return md
}

// randomCommit generates a commit of 1-3 items of random kinds: new folders and files,
// changes, renames, moves (files only, so no cycle), deletes, a failed item and a duplicate.
func (g *gen) randomCommit(w *wsSim) eventstore.Record {
	n := 1 + g.rng.IntN(3)
	var outs []domain.ItemOutcome
	touched := map[domain.ItemID]bool{}
	for range n {
		k := g.rng.IntN(10)
		var parent *domain.ItemID
		if len(w.folders) > 0 && g.rng.IntN(3) > 0 {
			parent = itemID(int64(w.folders[g.rng.IntN(len(w.folders))]))
		}
		switch {
		case k < 2 || len(w.files) == 0:
			outs = append(outs, w.store(g.newItem(w, parent, k == 0 || len(w.folders) == 0, fmt.Sprintf("n%d", g.nextID+1))))
		case k < 8:
			id := w.files[g.rng.IntN(len(w.files))]
			if touched[id] {
				continue
			}
			touched[id] = true
			st := []domain.Status{domain.StatusChanged, domain.StatusChanged, domain.StatusRenamed, domain.StatusMoved, domain.StatusDeleted, domain.StatusChanged}[k-2]
			outs = append(outs, w.store(g.next(w, id, st)))
		case k == 8:
			cur := w.items[w.files[g.rng.IntN(len(w.files))]].Clone()
			outs = append(outs, domain.ItemOutcome{CommittedVersion: cur.Version - 1, Reason: domain.ReasonWrongVersion, Metadata: &cur})
		default:
			cur := w.items[w.files[g.rng.IntN(len(w.files))]].Clone()
			outs = append(outs, domain.ItemOutcome{CommittedVersion: cur.Version, Succeeded: true, Metadata: &cur})
		}
	}
	return g.committed(w, outs)
}

// history generates users, workspaces and commits, in append batches.
func (g *gen) history(users, workspaces, commits int) []batch {
	var out []batch
	for range users {
		out = append(out, g.user())
	}
	for i := range workspaces {
		_, b := g.workspace(i%users, i%2 == 1)
		out = append(out, b)
	}
	for i := range commits {
		w := g.ws[g.rng.IntN(len(g.ws))]
		if i%5 == 0 || len(out) == 0 || out[len(out)-1].stream != w.stream {
			out = append(out, batch{stream: w.stream})
		}
		last := &out[len(out)-1]
		last.recs = append(last.recs, g.randomCommit(w))
	}
	return out
}

// appendAll appends the batches and returns the position of the last event appended.
func appendAll(t testing.TB, s eventstore.Store, bs []batch) eventstore.Position {
	t.Helper()
	ctx := context.Background()
	var last eventstore.Position
	for _, b := range bs {
		if len(b.recs) == 0 {
			continue
		}
		res, err := s.Append(ctx, b.stream, eventstore.Any(), b.recs...)
		if err != nil {
			t.Fatalf("append %d to %s: %v", len(b.recs), b.stream, err)
		}
		if last.Less(res.Position) {
			last = res.Position
		}
	}
	return last
}
