package domain

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	wsID     = uuid.MustParse("00000000-0000-4000-8000-0000000000a1")
	otherWS  = uuid.MustParse("00000000-0000-4000-8000-0000000000a2")
	owner    = uuid.MustParse("00000000-0000-4000-8000-0000000000b1")
	member   = uuid.MustParse("00000000-0000-4000-8000-0000000000b2")
	stranger = uuid.MustParse("00000000-0000-4000-8000-0000000000b3")
	dev1     = uuid.MustParse("00000000-0000-4000-8000-0000000000c1")
	dev2     = uuid.MustParse("00000000-0000-4000-8000-0000000000c2")
	t0       = time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
)

func iid(n ItemID) *ItemID { return &n }
func i64(n int64) *int64   { return &n }
func str(s string) *string { return &s }

// newFile is a version-1 NEW file with a tempId.
func newFile(temp int64, parent *ItemID, name string, size int64) ItemMetadata {
	return ItemMetadata{
		TempID: i64(temp), Version: 1, ParentID: parent, Status: StatusNew, ModifiedAt: t0,
		Checksum: size*7 + 1, Chunks: []string{"chk-" + strconv.FormatInt(temp, 10)}, Size: size, Filename: name, Mimetype: "text/plain",
	}
}

// newFolder is a version-1 NEW folder with a tempId.
func newFolder(temp int64, parent *ItemID, name string) ItemMetadata {
	return ItemMetadata{
		TempID: i64(temp), Version: 1, ParentID: parent, Status: StatusNew, ModifiedAt: t0,
		Chunks: []string{}, Filename: name, Mimetype: "inode/directory", IsFolder: true,
	}
}

// next is the version after m of item id with the given status, changed by fn.
func next(m ItemMetadata, id ItemID, status Status, fn func(*ItemMetadata)) ItemMetadata {
	n := m.Clone()
	n.ID = iid(id)
	n.TempID = nil
	n.Version = m.Version + 1
	n.Status = status
	if fn != nil {
		fn(&n)
	}
	return n
}

// at is m as a request for item id at version v.
func at(m ItemMetadata, id ItemID, v int64) ItemMetadata {
	n := m.Clone()
	n.ID = iid(id)
	n.TempID = nil
	n.Version = v
	return n
}

// hist builds a workspace history by deciding commands and folding the events.
type hist struct {
	t      *testing.T
	w      *Workspace
	events []Event
	nextID ItemID
	n      int
}

// newHist returns a workspace created by owner, with member added.
func newHist(t *testing.T) *hist {
	h := &hist{t: t, w: NewWorkspace(wsID), nextID: 100}
	h.do(CreateWorkspace{WorkspaceID: wsID, Name: "home", OwnerID: owner, At: t0})
	h.do(AddMember{WorkspaceID: wsID, UserID: member, Name: "shared-home", At: t0})
	return h
}

func (h *hist) do(cmd WorkspaceCommand) Event {
	h.t.Helper()
	d, err := h.w.Decide(cmd)
	if err != nil || len(d.Events) != 1 {
		h.t.Fatalf("given %T: %v (%d events)", cmd, err, len(d.Events))
	}
	h.w.Evolve(d.Events[0])
	h.events = append(h.events, d.Events[0])
	return d.Events[0]
}

// commit decides and applies a commit by owner from dev, with fresh ids 100, 101, ….
func (h *hist) commit(dev uuid.UUID, items ...ItemMetadata) Committed {
	h.t.Helper()
	h.n++
	c := Commit{
		RequestID: "given-" + string(rune('a'+h.n)), WorkspaceID: wsID, UserID: owner, DeviceID: dev,
		Items: items, At: t0.Add(time.Duration(h.n) * time.Second),
	}
	for range items {
		c.NewItemIDs = append(c.NewItemIDs, h.nextID)
		h.nextID++
	}
	e := h.do(c).(Committed)
	for i, o := range e.Items {
		if !o.Succeeded {
			h.t.Fatalf("given commit item %d failed: %s", i, o.Reason)
		}
	}
	return e
}

// cmt is a commit request by owner from dev1 with fresh ids 1000, 1001, ….
func cmt(items ...ItemMetadata) Commit {
	c := Commit{RequestID: "req-1", WorkspaceID: wsID, UserID: owner, DeviceID: dev1, Items: items, At: t0.Add(time.Hour)}
	for i := range items {
		c.NewItemIDs = append(c.NewItemIDs, ItemID(1000+i))
	}
	return c
}

// decide runs cmd on w and checks that Decide left w unchanged.
func decide(t *testing.T, w *Workspace, cmd WorkspaceCommand) (Decision, error) {
	t.Helper()
	before := w.Clone()
	d, err := w.Decide(cmd)
	if !reflect.DeepEqual(before, w) {
		t.Fatalf("Decide changed the state")
	}
	if err != nil && (len(d.Events) != 0 || d.ReplayOf != 0) {
		t.Fatalf("Decide returned an error with a decision: %+v", d)
	}
	if len(d.Events) > 1 {
		t.Fatalf("Decide returned %d events", len(d.Events))
	}
	return d, err
}

// oneCommitted decides a commit that must yield one Committed event, applies it to w
// and checks the outcomes against the state after applying it.
func oneCommitted(t *testing.T, w *Workspace, c Commit) Committed {
	t.Helper()
	d, err := decide(t, w, c)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if len(d.Events) != 1 {
		t.Fatalf("want 1 event, got %+v", d)
	}
	e, ok := d.Events[0].(Committed)
	if !ok {
		t.Fatalf("want Committed, got %T", d.Events[0])
	}
	if len(e.Items) != len(c.Items) {
		t.Fatalf("want %d outcomes, got %d", len(c.Items), len(e.Items))
	}
	w.Evolve(e)
	checkOutcomesStored(t, w, e)
	return e
}

// checkOutcomesStored: after applying e, every Stored outcome equals the stored version.
func checkOutcomesStored(t *testing.T, w *Workspace, e Committed) {
	t.Helper()
	for i, o := range e.Items {
		if !o.Stored {
			continue
		}
		vs := w.ItemVersions(*o.Metadata.ID)
		if int64(len(vs)) < o.Metadata.Version || !reflect.DeepEqual(vs[o.Metadata.Version-1], *o.Metadata) {
			t.Fatalf("outcome %d: stored version differs from the outcome:\n%+v\n%+v", i, o.Metadata, vs)
		}
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("want error %v, got %v", want, err)
	}
}
