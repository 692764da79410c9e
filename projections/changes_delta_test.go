package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// randomWorkspace drives one workspace through domain-decided commits: creates of
// folders and files (nested), changes, renames, moves of files and folders (the domain
// refuses cycles), deletes, and shares of folders (their subtrees move out).
type randomWorkspace struct {
	t      *testing.T
	rng    *rand.Rand
	d      *decider
	owner  uuid.UUID
	device uuid.UUID
	nextID domain.ItemID
	seq    int
	temps  int64
}

func (r *randomWorkspace) commit(items ...domain.ItemMetadata) {
	r.seq++
	var ids []domain.ItemID
	for range items {
		r.nextID++
		ids = append(ids, r.nextID)
	}
	r.d.do(domain.Commit{RequestID: fmt.Sprintf("c%d", r.seq), WorkspaceID: r.d.w.ID(), UserID: r.owner, DeviceID: r.device,
		At: t0.Add(time.Duration(r.seq) * time.Second), NewItemIDs: ids, Items: items, PrevHash: r.d.prev})
}

// randomCommit commits 1-4 random changes to distinct items.
func (r *randomWorkspace) randomCommit() {
	all := r.d.w.Items()
	var folders []domain.ItemID
	for _, it := range all {
		if it.IsFolder && it.Status != domain.StatusDeleted {
			folders = append(folders, *it.ID)
		}
	}
	folder := func() *domain.ItemID {
		if len(folders) == 0 || r.rng.IntN(5) == 0 {
			return nil
		}
		return itemID(int64(folders[r.rng.IntN(len(folders))]))
	}
	var items []domain.ItemMetadata
	touched := map[domain.ItemID]bool{}
	for range 1 + r.rng.IntN(4) {
		k := r.rng.IntN(10)
		if k < 4 || len(all) == 0 {
			r.temps++ // a device's temp id names one new item: never reused
			temp := -r.temps
			m := domain.ItemMetadata{TempID: &temp, Version: 1, ParentID: folder(), Status: domain.StatusNew,
				ModifiedAt: t0, Chunks: []string{}, IsFolder: k == 0, Filename: fmt.Sprintf("n%d", r.rng.IntN(1000)), Mimetype: "inode/directory"}
			if !m.IsFolder {
				m.Size, m.Checksum, m.Chunks, m.Mimetype = int64(r.rng.IntN(1000)), 1, []string{fmt.Sprintf("c%d", r.rng.IntN(99))}, "text/plain"
			}
			items = append(items, m)
			continue
		}
		m := all[r.rng.IntN(len(all))]
		if touched[*m.ID] {
			continue
		}
		touched[*m.ID] = true
		m.TempID, m.ParentVersion, m.Version = nil, nil, m.Version+1
		switch k {
		case 4:
			m.Status, m.Size = domain.StatusChanged, int64(r.rng.IntN(1000))
			if !m.IsFolder {
				m.Chunks = []string{fmt.Sprintf("c%d", r.rng.IntN(99))}
			}
		case 5:
			m.Status, m.Filename = domain.StatusRenamed, m.Filename+"-r"
		case 6, 7:
			m.Status, m.ParentID = domain.StatusMoved, folder()
		default:
			m.Status = domain.StatusDeleted
		}
		items = append(items, m)
	}
	r.commit(items...)
}

// share shares a random live folder of the workspace, if any is not shared yet.
func (r *randomWorkspace) share(st eventstore.Store) bool {
	var folders []domain.ItemID
	for _, it := range r.d.w.Items() {
		if _, shared := r.d.w.ShareOf(*it.ID); it.IsFolder && it.Status != domain.StatusDeleted && !shared {
			folders = append(folders, *it.ID)
		}
	}
	if len(folders) == 0 {
		return false
	}
	r.seq++
	cmd := domain.ShareFolder{RequestID: fmt.Sprintf("s%d", r.seq), UserID: r.owner, SourceID: r.d.w.ID(),
		FolderID: folders[r.rng.IntN(len(folders))], Members: []uuid.UUID{uuid.New()},
		At: t0.Add(time.Duration(r.seq) * time.Second), SourcePrevHash: r.d.prev}
	s := &decider{t: r.t, w: domain.NewWorkspace(r.d.w.ShareTarget(cmd)), st: st}
	dec, err := domain.DecideShare(r.d.w, s.w, cmd)
	if err != nil {
		r.t.Logf("share of %d refused: %v", cmd.FolderID, err)
		return false
	}
	multi := st.(eventstore.MultiAppender)
	if _, err := multi.AppendMulti(context.Background(), []eventstore.StreamAppend{r.d.records(dec.Source), s.records(dec.Target)}); err != nil {
		r.t.Fatal(err)
	}
	return true
}

// noting passes appends to the env's store and notes their positions for caughtUp.
type noting struct {
	eventstore.Store
	e *env
}

func (n noting) note(p eventstore.Position) {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	if n.e.appended.Less(p) {
		n.e.appended = p
	}
}

func (n noting) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, records ...eventstore.Record) (eventstore.AppendResult, error) {
	res, err := n.e.store.Append(ctx, stream, expected, records...)
	n.note(res.Position)
	return res, err
}

func (n noting) AppendMulti(ctx context.Context, appends []eventstore.StreamAppend) ([]eventstore.AppendResult, error) {
	res, err := n.e.store.AppendMulti(ctx, appends)
	for _, r := range res {
		n.note(r.Position)
	}
	return res, err
}

// TestPatchedAnswerEqualsAFullRead commits at random to a workspace (creates, updates,
// moves, deletes, shares) and checks, after every step, that the answer patched from
// an earlier one (the last answer, or one several commits old) is byte for byte the
// answer a full read gives, with the same items, offsets and stamp; that a delta over
// MaxDelta, a base at the current version and a base of a later version read in full.
func TestPatchedAnswerEqualsAFullRead(t *testing.T) {
	e := newEnv(t)
	e.projectAll(t)
	ctx := context.Background()
	r := &randomWorkspace{t: t, rng: rand.New(rand.NewPCG(14, 15)), owner: uuid.New(), device: uuid.New(), nextID: 100}
	st := noting{e.store, e}
	r.d = &decider{t: t, w: domain.NewWorkspace(uuid.New()), st: st}
	ws := r.d.w.ID()
	r.d.do(domain.CreateWorkspace{WorkspaceID: ws, Name: "home", OwnerID: r.owner, At: t0})
	for range 8 {
		r.randomCommit()
	}
	caughtUp := func() {
		t.Helper()
		e.caughtUp(t, ModelWorkspaces)
	}
	full := func() changeset.Answer {
		t.Helper()
		a, err := e.q.EncodedAnswer(ctx, ws, nil, wire.AppendItem)
		if err != nil || a.Patched {
			t.Fatalf("full read at seq %d: %v (patched %v)", r.seq, err, a.Patched)
		}
		return a
	}
	baseOf := func(a changeset.Answer) *changeset.Base {
		return &changeset.Base{Text: bytes.Join(a.Pieces, nil), Items: a.Items, Version: a.Version}
	}
	caughtUp()
	last := baseOf(full())
	old := last
	patched, shares, most := 0, 0, 0
	for step := range 120 {
		switch {
		case step%25 == 24:
			if r.share(st) {
				shares++
			}
		default:
			r.randomCommit()
		}
		caughtUp()
		want := full()
		for _, base := range []*changeset.Base{last, old} {
			got, err := e.q.EncodedAnswer(ctx, ws, base, wire.AppendItem)
			if err != nil {
				t.Fatal(err)
			}
			if got.Patched != (base.Version < want.Version) { // a commit of refused items only: no new version
				t.Fatalf("step %d: the answer at %d from a base at %d: patched %v", step, want.Version, base.Version, got.Patched)
			}
			sameAnswer(t, fmt.Sprintf("step %d, base %d", step, base.Version), got, want)
			if got.Patched {
				patched++
			}
		}
		most = max(most, len(want.Items))
		next := baseOf(want)
		if r.rng.IntN(2) == 0 { // patch the next from a patched answer too
			a, _ := e.q.EncodedAnswer(ctx, ws, last, wire.AppendItem)
			next = baseOf(a)
		}
		last = next
		if step%10 == 9 {
			old = last
		}
	}
	t.Logf("%d patched answers compared, %d shares, %d items at most, %d at the end", patched, shares, most, len(last.Items))
	if patched < 150 || shares < 3 || most < 40 {
		t.Fatalf("the random walk should patch (%d), share (%d) and grow (%d) more", patched, shares, most)
	}

	// Where the answer is read in full: a delta over MaxDelta, a base at the current
	// version (a rewrite at the same version: another tag) or past it.
	small := NewQueries(e.pool)
	small.MaxDelta = 2
	before := last
	r.commit(slices.Repeat([]domain.ItemMetadata{{Version: 1, Status: domain.StatusNew, ModifiedAt: t0, Chunks: []string{}, Filename: "x", Mimetype: "text/plain"}}, 3)...)
	caughtUp()
	want := full()
	for name, c := range map[string]struct {
		q    *Queries
		base *changeset.Base
	}{
		"over MaxDelta":   {small, before},
		"current version": {e.q, baseOf(want)},
		"later version":   {e.q, &changeset.Base{Text: before.Text, Items: before.Items, Version: want.Version + 1}},
	} {
		got, err := c.q.EncodedAnswer(ctx, ws, c.base, wire.AppendItem)
		if err != nil || got.Patched {
			t.Fatalf("%s: %v, patched %v: want a full read", name, err, got.Patched)
		}
		sameAnswer(t, name, got, want)
	}
	if got, err := e.q.EncodedAnswer(ctx, ws, before, wire.AppendItem); err != nil || !got.Patched {
		t.Fatalf("a delta of 3 items under the default MaxDelta: %v, patched %v", err, got.Patched)
	}
	// A patched answer keeps the byte bound of a full read: the same estimate, the same limit.
	tight := NewQueries(e.pool)
	tight.MaxResultBytes = changeset.Estimate(want.Items)
	if got, err := tight.EncodedAnswer(ctx, ws, before, wire.AppendItem); err != nil || !got.Patched {
		t.Fatalf("an answer at the bound: %v, patched %v", err, got.Patched)
	}
	tight.MaxResultBytes--
	for _, base := range []*changeset.Base{before, nil} {
		if _, err := tight.EncodedAnswer(ctx, ws, base, wire.AppendItem); !errors.Is(err, protocol.ErrResultTooLarge) {
			t.Fatalf("an answer a byte over the bound (base %v): %v, want ErrResultTooLarge", base != nil, err)
		}
	}
}

// sameAnswer fails the test unless got and want have the same text, items and stamp.
func sameAnswer(t *testing.T, what string, got, want changeset.Answer) {
	t.Helper()
	g, w := bytes.Join(got.Pieces, nil), bytes.Join(want.Pieces, nil)
	if !bytes.Equal(g, w) {
		t.Fatalf("%s: patched answer\n%s\nwant\n%s", what, g, w)
	}
	if !slices.Equal(got.Items, want.Items) || got.Version != want.Version || got.Tag != want.Tag {
		t.Fatalf("%s: items or stamp (%d, %d) differ from the full read's (%d, %d)", what, got.Version, got.Tag, want.Version, want.Tag)
	}
}
