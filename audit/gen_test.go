package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// histGen writes a workspace history the way the service does: each command is decided
// by the domain against the state folded so far, encoded, chained to the previous event
// and appended with the expected stream version. Ids and times are deterministic, so the
// same script always writes the same bytes.
type histGen struct {
	tb      testing.TB
	store   eventstore.Store
	ws      uuid.UUID
	w       *domain.Workspace
	prev    string
	clock   time.Time
	nextID  domain.ItemID
	pending []eventstore.Record
	batch   int
	seq     uint64
}

var genNS = uuid.MustParse("6f1c8d7e-2b6a-4c4e-9a53-0c1f2e3d4a5b")

// fixedID returns a deterministic uuid for a name.
func fixedID(name string) uuid.UUID { return uuid.NewSHA1(genNS, []byte(name)) }

// genStart is the time of the first generated event.
var genStart = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func newHistGen(tb testing.TB, s eventstore.Store, ws uuid.UUID, batch int) *histGen {
	return &histGen{tb: tb, store: s, ws: ws, w: domain.NewWorkspace(ws), clock: genStart, nextID: 1, batch: batch}
}

func (h *histGen) stream() string { return domain.WorkspaceStream(h.ws) }

// do decides cmd at the next minute and queues its event (appended at the batch size
// or by flush). It returns the event.
func (h *histGen) do(cmd domain.WorkspaceCommand) domain.Event {
	h.tb.Helper()
	h.clock = h.clock.Add(time.Minute)
	switch c := cmd.(type) {
	case domain.CreateWorkspace:
		c.WorkspaceID, c.PrevHash, c.At = h.ws, h.prev, h.clock
		cmd = c
	case domain.AddMember:
		c.WorkspaceID, c.PrevHash, c.At = h.ws, h.prev, h.clock
		cmd = c
	case domain.RemoveMember:
		c.WorkspaceID, c.PrevHash, c.At = h.ws, h.prev, h.clock
		cmd = c
	case domain.UpdateMemberWorkspace:
		c.WorkspaceID, c.PrevHash, c.At = h.ws, h.prev, h.clock
		cmd = c
	case domain.Commit:
		c.WorkspaceID, c.PrevHash, c.At = h.ws, h.prev, h.clock
		for range c.Items {
			c.NewItemIDs = append(c.NewItemIDs, h.nextID)
			h.nextID++
		}
		cmd = c
	}
	dec, err := h.w.Decide(cmd)
	if err != nil {
		h.tb.Fatalf("decide %T: %v", cmd, err)
	}
	if len(dec.Events) != 1 {
		h.tb.Fatalf("decide %T: %d events (replay of %d)", cmd, len(dec.Events), dec.ReplayOf)
	}
	ev := dec.Events[0]
	typ, data, err := domain.Encode(ev)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.w.Evolve(ev)
	h.prev = domain.ChainHash(typ, data)
	h.seq++
	h.pending = append(h.pending, eventstore.Record{ID: uuid.NewSHA1(h.ws, fmt.Appendf(nil, "%d", h.seq)), Type: typ, Data: data})
	if len(h.pending) >= h.batch {
		h.flush()
	}
	return ev
}

// flush appends the queued events.
func (h *histGen) flush() {
	h.tb.Helper()
	if len(h.pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := h.w.StreamVersion() - uint64(len(h.pending))
	if _, err := h.store.Append(ctx, h.stream(), eventstore.Exact(before), h.pending...); err != nil {
		h.tb.Fatalf("append %d events to %s at %d: %v", len(h.pending), h.stream(), before, err)
	}
	h.pending = h.pending[:0]
}

// commit decides a commit request of user from device.
func (h *histGen) commit(req string, user, device uuid.UUID, items ...domain.ItemMetadata) domain.Committed {
	h.tb.Helper()
	return h.do(domain.Commit{RequestID: req, UserID: user, DeviceID: device, Items: items}).(domain.Committed)
}

// it builds a request item.
type it struct {
	id       domain.ItemID // 0: new
	temp     int64         // 0: none
	parent   domain.ItemID // 0: root
	version  int64
	status   domain.Status
	name     string
	folder   bool
	size     int64
	checksum int64
}

func (h *histGen) item(x it) domain.ItemMetadata {
	m := domain.ItemMetadata{
		Version:     x.version,
		WorkspaceID: h.ws,
		Status:      x.status,
		ModifiedAt:  h.clock,
		Checksum:    x.checksum,
		Size:        x.size,
		IsFolder:    x.folder,
		Filename:    x.name,
		Chunks:      []string{},
		Mimetype:    "application/octet-stream",
	}
	if x.folder {
		m.Mimetype = "inode/directory"
	} else if x.size > 0 {
		m.Chunks = []string{fmt.Sprintf("chunk-%d-%d", x.checksum, x.size)}
	}
	if x.id != 0 {
		id := x.id
		m.ID = &id
	}
	if x.temp != 0 {
		t := x.temp
		m.TempID = &t
	}
	if x.parent != 0 {
		p := x.parent
		m.ParentID = &p
	}
	return m
}

// The actors of the scripted history.
var (
	scriptWS      = fixedID("workspace")
	ownerID       = fixedID("owner")
	ownerDevice   = fixedID("owner-laptop")
	memberID      = fixedID("member")
	memberDevice  = fixedID("member-phone")
	scriptVersion = int64(8) // commits in the script
)

// Item ids the script's commits are given (one per request item, in order).
const (
	folderProjects domain.ItemID = 1 // commit r1, item 0
	filePlan       domain.ItemID = 2 // commit r1, item 1
	fileNotes      domain.ItemID = 4 // commit r3, item 1 (ids 3, 5 and 6 are handed out but never used)
)

// writeScript writes a small history exercising every kind of row: lifecycle events,
// creations, changes, renames, moves, a delete and a revival, a duplicate re-send and
// rejected items with and without metadata.
func writeScript(tb testing.TB, s eventstore.Store) *histGen {
	h := newHistGen(tb, s, scriptWS, 1)
	h.do(domain.CreateWorkspace{Name: "Docs", OwnerID: ownerID})
	h.do(domain.AddMember{UserID: memberID, Name: "Shared Docs"})
	h.commit("r1", ownerID, ownerDevice,
		h.item(it{temp: 1, version: 1, status: domain.StatusNew, name: "projects", folder: true}),
		h.item(it{temp: 2, parent: 1, version: 1, status: domain.StatusNew, name: "plan.txt", size: 10, checksum: 111}))
	h.commit("r2", memberID, memberDevice,
		h.item(it{id: filePlan, parent: folderProjects, version: 2, status: domain.StatusChanged, name: "plan.txt", size: 20, checksum: 222}))
	h.commit("r3", ownerID, ownerDevice,
		h.item(it{id: filePlan, parent: folderProjects, version: 2, status: domain.StatusChanged, name: "plan.txt", size: 25, checksum: 333}),
		h.item(it{temp: 3, version: 1, status: domain.StatusNew, name: "notes.md", size: 5, checksum: 555}),
		h.item(it{temp: 4, version: 3, status: domain.StatusNew, name: "ghost.txt", size: 1, checksum: 1}))
	h.commit("r4", memberID, memberDevice,
		h.item(it{id: filePlan, parent: folderProjects, version: 3, status: domain.StatusRenamed, name: "plan-v2.txt", size: 20, checksum: 222}))
	h.do(domain.UpdateMemberWorkspace{RequestID: "u1", UserID: memberID, Name: "Team Docs", ParentItemID: nil})
	h.commit("r5", ownerID, ownerDevice,
		h.item(it{id: filePlan, version: 4, status: domain.StatusMoved, name: "plan-v2.txt", size: 20, checksum: 222}))
	h.commit("r6", memberID, memberDevice,
		h.item(it{id: filePlan, version: 5, status: domain.StatusDeleted, name: "plan-v2.txt"}))
	h.commit("r7", ownerID, ownerDevice,
		h.item(it{id: filePlan, version: 6, status: domain.StatusChanged, name: "plan-v2.txt", size: 30, checksum: 666}),
		h.item(it{temp: 3, version: 1, status: domain.StatusNew, name: "notes.md", size: 5, checksum: 555}))
	h.commit("r8", memberID, memberDevice,
		h.item(it{temp: 9, parent: fileNotes, version: 1, status: domain.StatusNew, name: "inside.txt", size: 1, checksum: 9}))
	h.do(domain.RemoveMember{UserID: memberID})
	h.flush()
	if h.w.Version() != scriptVersion {
		tb.Fatalf("script wrote %d commits, want %d", h.w.Version(), scriptVersion)
	}
	return h
}
