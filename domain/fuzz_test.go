package domain

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// FuzzDecode: arbitrary type names and bytes never panic the codec; whatever decodes
// re-encodes stably and can be folded into any state without a panic.
func FuzzDecode(f *testing.F) {
	for _, typ := range EventTypes() {
		if golden, err := os.ReadFile(goldenPath(typ)); err == nil {
			f.Add(typ, golden)
		}
	}
	f.Add(TypeCommitted, []byte(`{"items":[{"commitSucceed":true,"stored":true,"metadata":{"id":1,"version":1}}]}`))
	f.Add("nope", []byte("{}"))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := Decode(typ, data)
		if err != nil {
			if !errors.Is(err, ErrUnknownEventType) && !errors.Is(err, ErrMalformedEvent) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		typ2, b1, err := Encode(e)
		if err != nil || typ2 != typ {
			t.Fatalf("decoded event does not encode: %s %v", typ2, err)
		}
		e2, err := Decode(typ, b1)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		_, b2, _ := Encode(e2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding unstable:\n%s\n%s", b1, b2)
		}
		// Fold into empty and non-empty states of the ids the event names, and others.
		h := newHist(t)
		h.commit(dev1, fileA, folderF)
		states := []*Workspace{NewWorkspace(wsID), h.w}
		if c, ok := e.(Committed); ok {
			w := NewWorkspace(c.WorkspaceID)
			w.Evolve(WorkspaceCreated{WorkspaceID: c.WorkspaceID, OwnerID: owner, Name: "x"})
			states = append(states, w)
		}
		for _, w := range states {
			sv := w.StreamVersion()
			w.Evolve(e)
			if w.StreamVersion() != sv+1 {
				t.Fatalf("stream version not counted")
			}
			_ = w.Items()
			_ = w.Members()
		}
		u := givenUser(t, userA, register(dev1, "r"))
		u.Evolve(e)
		NewUser(userA).Evolve(e)
	})
}

// source draws the choices of a random command sequence.
type source interface {
	intn(n int, label string) int
}

// byteSource draws from fuzz bytes; when they run out it draws zeros and says done.
type byteSource struct {
	b    []byte
	done bool
}

func (s *byteSource) intn(n int, _ string) int {
	if len(s.b) == 0 {
		s.done = true
		return 0
	}
	v := int(s.b[0])
	s.b = s.b[1:]
	return v % n
}

type rapidSource struct{ t *rapid.T }

func (s rapidSource) intn(n int, label string) int { return rapid.IntRange(0, n-1).Draw(s.t, label) }

// tb is what the sequence runner needs of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// seqRun drives a workspace with random commands and checks the invariants after each.
type seqRun struct {
	t       tb
	src     source
	w       *Workspace
	stored  []Event // the decoded form of every appended event
	nextID  ItemID
	step    int
	commits map[uint64]string // stream version → requestId of the Committed there
}

func newSeqRun(t tb, src source) *seqRun {
	r := &seqRun{t: t, src: src, w: NewWorkspace(wsID), nextID: 100, commits: map[uint64]string{}}
	r.apply(CreateWorkspace{WorkspaceID: wsID, Name: "home", OwnerID: owner, At: t0})
	r.apply(AddMember{WorkspaceID: wsID, UserID: member, At: t0})
	return r
}

func (r *seqRun) pick(label string, n int) int { return r.src.intn(n, label) }

func pickOf[T any](r *seqRun, label string, xs ...T) T { return xs[r.pick(label, len(xs))] }

// apply decides cmd, checks the decision and, if it is an event, stores and folds it.
func (r *seqRun) apply(cmd WorkspaceCommand) {
	r.t.Helper()
	r.step++
	before := r.w.Clone()
	d, err := r.w.Decide(cmd)
	if !reflect.DeepEqual(before, r.w) {
		r.t.Fatalf("step %d: Decide changed the state", r.step)
	}
	d2, err2 := r.w.Decide(cmd)
	if !reflect.DeepEqual(d, d2) || (err == nil) != (err2 == nil) {
		r.t.Fatalf("step %d: Decide is not deterministic", r.step)
	}
	if err != nil {
		if len(d.Events) != 0 || d.ReplayOf != 0 {
			r.t.Fatalf("step %d: error with a decision", r.step)
		}
		for _, s := range []error{ErrInvalidCommand, ErrNotFound, ErrAlreadyExists, ErrNotMember, ErrAlreadyMember, ErrOwnerIsMember} {
			if errors.Is(err, s) {
				return
			}
		}
		r.t.Fatalf("step %d: error of no known kind: %v", r.step, err)
	}
	if d.ReplayOf != 0 {
		c, ok := cmd.(Commit)
		if len(d.Events) != 0 || !ok || r.commits[d.ReplayOf] != c.RequestID {
			if _, isUpd := cmd.(UpdateMemberWorkspace); !isUpd {
				r.t.Fatalf("step %d: replay %+v of %T does not point at its original", r.step, d, cmd)
			}
		}
		return
	}
	if len(d.Events) != 1 {
		r.t.Fatalf("step %d: %d events", r.step, len(d.Events))
	}
	typ, data, err := Encode(d.Events[0])
	if err != nil {
		r.t.Fatalf("step %d: decided event does not encode: %v", r.step, err)
	}
	e, err := Decode(typ, data)
	if err != nil || !reflect.DeepEqual(e, d.Events[0]) {
		r.t.Fatalf("step %d: stored form differs from the decided event: %v\n%+v\n%+v", r.step, err, e, d.Events[0])
	}
	if e.Prev() != prevHashOf(cmd) {
		r.t.Fatalf("step %d: PrevHash not the command's", r.step)
	}
	version := r.w.Version()
	r.w.Evolve(e)
	r.stored = append(r.stored, e)
	if c, ok := e.(Committed); ok {
		r.commits[r.w.StreamVersion()] = c.RequestID
		if c.WorkspaceVersion != version+1 || r.w.Version() != version+1 {
			r.t.Fatalf("step %d: workspace version %d after %d (state %d)", r.step, c.WorkspaceVersion, version, r.w.Version())
		}
		r.checkCommitted(cmd.(Commit), c)
	}
	r.checkState()
}

func prevHashOf(cmd WorkspaceCommand) string {
	return reflect.ValueOf(cmd).FieldByName("PrevHash").String()
}

// checkCommitted: one outcome per item; after the event is applied, every successful
// outcome equals the stored version it names.
func (r *seqRun) checkCommitted(cmd Commit, e Committed) {
	r.t.Helper()
	if len(e.Items) != len(cmd.Items) {
		r.t.Fatalf("step %d: %d outcomes for %d items", r.step, len(e.Items), len(cmd.Items))
	}
	for i, o := range e.Items {
		if o.CommittedVersion != cmd.Items[i].Version {
			r.t.Fatalf("step %d item %d: committedVersion %d", r.step, i, o.CommittedVersion)
		}
		if !o.Succeeded {
			if o.Stored || o.Reason == "" {
				r.t.Fatalf("step %d item %d: failed outcome stored=%v reason=%q", r.step, i, o.Stored, o.Reason)
			}
			continue
		}
		if o.Reason != "" || o.Metadata == nil || o.Metadata.ID == nil {
			r.t.Fatalf("step %d item %d: successful outcome %+v", r.step, i, o)
		}
		vs := r.w.ItemVersions(*o.Metadata.ID)
		v := o.Metadata.Version
		if v < 1 || v > int64(len(vs)) || !reflect.DeepEqual(vs[v-1], *o.Metadata) {
			r.t.Fatalf("step %d item %d: outcome differs from stored version %d:\n%+v\n%+v", r.step, i, v, o.Metadata, vs)
		}
		if o.Stored && (o.Metadata.DeviceID != cmd.DeviceID || o.Metadata.WorkspaceID != wsID) {
			r.t.Fatalf("step %d item %d: stored with device %s workspace %s", r.step, i, o.Metadata.DeviceID, o.Metadata.WorkspaceID)
		}
	}
	if e.WorkspaceUsed != r.w.Used() || e.UsedQuota != cmd.OwnerUsedElsewhere+r.w.Used() || e.LimitQuota != cmd.QuotaLimit {
		r.t.Fatalf("step %d: quota figures %+v, used %d", r.step, e, r.w.Used())
	}
}

// checkState: contiguous versions, parents listed before children and folders, no
// cycles, Used the sum of live sizes, folders empty.
func (r *seqRun) checkState() {
	r.t.Helper()
	items := r.w.Items()
	pos := map[ItemID]int{}
	lastChild := map[ItemID]ItemID{} // parent (0 = root) → last child listed
	var used int64
	for i, m := range items {
		id := *m.ID
		pos[id] = i
		vs := r.w.ItemVersions(id)
		for j, v := range vs {
			if v.Version != int64(j+1) || v.ID == nil || *v.ID != id || v.IsFolder != vs[0].IsFolder || v.Mimetype != vs[0].Mimetype {
				r.t.Fatalf("step %d: item %d versions not contiguous or immutable fields changed: %+v", r.step, id, vs)
			}
			if !ValidName(v.Filename) || v.Size < 0 || (v.Status == StatusDeleted && v.Size != 0) ||
				(v.IsFolder && (v.Size != 0 || v.Checksum != 0 || len(v.Chunks) != 0)) {
				r.t.Fatalf("step %d: item %d invalid version stored: %+v", r.step, id, v)
			}
		}
		used += liveSize(&m)
		var parent ItemID
		if m.ParentID != nil {
			parent = *m.ParentID
		}
		if prev, ok := lastChild[parent]; ok && prev >= id {
			r.t.Fatalf("step %d: siblings %d and %d listed out of order", r.step, prev, id)
		}
		lastChild[parent] = id
		if m.ParentID != nil {
			p, ok := pos[*m.ParentID]
			if !ok || !items[p].IsFolder {
				r.t.Fatalf("step %d: item %d listed before its parent %d, or the parent is no folder", r.step, id, *m.ParentID)
			}
		}
	}
	if len(pos) != len(items) || used != r.w.Used() {
		r.t.Fatalf("step %d: %d items listed once of %d; used %d, state says %d", r.step, len(pos), len(items), used, r.w.Used())
	}
}

// checkReplay: folding the stored events into a new state gives the same state.
func (r *seqRun) checkReplay() {
	r.t.Helper()
	w := NewWorkspace(wsID)
	for _, e := range r.stored {
		w.Evolve(e)
	}
	if !reflect.DeepEqual(w, r.w) {
		r.t.Fatalf("replaying %d stored events gives another state", len(r.stored))
	}
}

// existing returns the ids of the workspace's items in getChanges order.
func (r *seqRun) existing() []ItemID {
	var ids []ItemID
	for _, m := range r.w.Items() {
		ids = append(ids, *m.ID)
	}
	return ids
}

func (r *seqRun) anyParent(label string) *ItemID {
	ids := r.existing()
	switch r.pick(label+".kind", 5) {
	case 0, 1:
		return nil
	case 2: // a tempId of this request, perhaps
		return iid(ItemID(r.pick(label+".temp", 4)))
	case 3:
		if len(ids) > 0 {
			return iid(ids[r.pick(label+".id", len(ids))])
		}
		return nil
	default:
		return iid(pickOf[ItemID](r, label+".bad", 999999, 0, -1))
	}
}

func (r *seqRun) genItem(i int) ItemMetadata {
	l := fmt.Sprintf("item%d", i)
	ids := r.existing()
	modAt := t0.Add(time.Duration(r.pick(l+".mod", 5000)) * 1234567 * time.Nanosecond)
	if r.pick(l+".zeroTime", 32) == 0 {
		modAt = time.Time{}
	}
	kind := r.pick(l+".kind", 10)
	if kind <= 2 || len(ids) == 0 { // a new item
		folder := r.pick(l+".folder", 3) == 0
		m := ItemMetadata{
			TempID: i64(int64(r.pick(l+".temp", 4))), Version: pickOf[int64](r, l+".version", 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0),
			ParentID: r.anyParent(l + ".parent"), Status: pickOf(r, l+".status", StatusNew, StatusNew, StatusNew, StatusNew, StatusNew, StatusNew, StatusNew, StatusChanged),
			ModifiedAt: modAt, Filename: pickOf(r, l+".name", "a", "b", "c", "d", "e", "f", "g", "h", "..", "x/y", ""), Chunks: []string{},
			Mimetype: "text/plain",
		}
		if folder {
			m.IsFolder, m.Mimetype = true, "inode/directory"
			if r.pick(l+".badFolder", 10) == 0 {
				m.Size = 1
			}
		} else {
			m.Size = pickOf[int64](r, l+".size", 0, 1, 10, 60, 3, 7, 25, -1)
			m.Checksum = int64(r.pick(l+".sum", 3))
			m.Chunks = []string{pickOf(r, l+".chunk", "c1", "c2")}
		}
		if r.pick(l+".dropTemp", 8) == 0 {
			m.TempID = nil
		}
		return m
	}
	if kind == 9 { // an id that names nothing here
		m := fileA.Clone()
		m.ID, m.TempID = iid(pickOf[ItemID](r, l+".unknown", 0, -5, 999999, 50)), nil
		m.Version = int64(r.pick(l+".version", 3))
		return m
	}
	id := ids[r.pick(l+".which", len(ids))]
	cur, _ := r.w.Item(id)
	m := cur.Clone()
	m.TempID = nil
	m.ModifiedAt = modAt
	m.Version = cur.Version + pickOf[int64](r, l+".dv", 1, 1, 1, 1, 1, 1, 1, 1, 0, -1, 2, -cur.Version)
	m.Status = pickOf(r, l+".status", StatusChanged, StatusChanged, StatusChanged, StatusRenamed, StatusRenamed, StatusMoved, StatusMoved, StatusDeleted, StatusDeleted, StatusNew, Status("BAD"))
	switch r.pick(l+".change", 8) {
	case 0:
		m.Filename = pickOf(r, l+".name", "a", "b", "e", ".")
	case 1:
		m.ParentID = r.anyParent(l + ".parent")
	case 2:
		if !m.IsFolder {
			m.Size = pickOf[int64](r, l+".size", 0, 5, 50, 100, -3)
			m.Chunks = []string{pickOf(r, l+".chunk", "c3", "c4")}
		}
	case 3:
		m.IsFolder = !m.IsFolder
	case 4:
		m.Mimetype = "other/type"
	}
	if r.pick(l+".byTemp", 6) == 0 { // address it by a tempId instead
		m.ID, m.TempID = nil, i64(int64(r.pick(l+".temp", 4)))
	}
	return m
}

func (r *seqRun) stepOnce() {
	switch r.pick("op", 12) {
	case 0:
		r.apply(AddMember{WorkspaceID: wsID, UserID: pickOf(r, "add.user", member, stranger, owner), At: t0, PrevHash: "h"})
	case 1:
		r.apply(RemoveMember{WorkspaceID: wsID, UserID: pickOf(r, "rm.user", member, stranger, owner), At: t0})
	case 2:
		r.apply(UpdateMemberWorkspace{RequestID: fmt.Sprintf("u%d", r.pick("upd.req", 4)), WorkspaceID: wsID,
			UserID: pickOf(r, "upd.user", member, stranger, owner), Name: pickOf(r, "upd.name", "n", ".."), At: t0})
	default:
		n := 1 + r.pick("items", 4)
		c := Commit{
			RequestID: fmt.Sprintf("r%d", r.pick("req", 48)), WorkspaceID: wsID,
			UserID:   pickOf(r, "user", owner, owner, owner, member, stranger),
			DeviceID: pickOf(r, "device", dev1, dev2),
			At:       t0.Add(time.Duration(r.step) * time.Second), QuotaLimit: pickOf[int64](r, "limit", 0, 0, 50, 200),
			OwnerUsedElsewhere: pickOf[int64](r, "elsewhere", 0, 20), PrevHash: fmt.Sprint(r.step),
		}
		for i := 0; i < n; i++ {
			c.Items = append(c.Items, r.genItem(i))
			c.NewItemIDs = append(c.NewItemIDs, r.nextID)
			r.nextID++
		}
		r.apply(c)
	}
}

// FuzzDecide: random command sequences never panic, and every decision keeps the
// invariants: Decide pure and deterministic, one event, stored form equal to the
// decided one, workspace version gap-free, outcomes reproduced by Evolve, versions
// contiguous from 1, parents before children, Used consistent, replay reproduces state.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 2, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{3, 1, 7, 200, 13, 0, 4, 2, 9}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &byteSource{b: data}
		r := newSeqRun(t, src)
		for i := 0; i < 64 && !src.done; i++ {
			r.stepOnce()
		}
		r.checkReplay()
	})
}

// TestDecideProperties checks the FuzzDecide invariants on sequences rapid generates
// (and shrinks on failure).
func TestDecideProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		r := newSeqRun(rt, rapidSource{rt})
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			r.stepOnce()
		}
		r.checkReplay()
	})
}
