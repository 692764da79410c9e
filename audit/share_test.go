package audit

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// chained appends decided events to one stream, carrying the chain hash.
type chained struct {
	t      *testing.T
	s      *memstore.Store
	w      *domain.Workspace
	stream string
	prev   string
}

func (c *chained) records(evs []domain.Event) eventstore.StreamAppend {
	c.t.Helper()
	a := eventstore.StreamAppend{Stream: c.stream, Expected: eventstore.Exact(c.w.StreamVersion())}
	for _, e := range evs {
		typ, data, err := domain.Encode(e)
		if err != nil {
			c.t.Fatal(err)
		}
		a.Records = append(a.Records, eventstore.Record{ID: uuid.New(), Type: typ, Data: data})
		c.w.Evolve(e)
		c.prev = domain.ChainHash(typ, data)
	}
	return a
}

func (c *chained) do(cmd domain.WorkspaceCommand) {
	c.t.Helper()
	d, err := c.w.Decide(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	a := c.records(d.Events)
	if _, err := c.s.Append(ctxT(c.t), a.Stream, a.Expected, a.Records...); err != nil {
		c.t.Fatal(err)
	}
}

// Ways shareScenario stores the share.
const (
	shareWhole      = "whole"       // one AppendMulti
	shareSourceOnly = "source only" // ItemsMovedOut alone
	shareTargetOnly = "shared only" // the shared workspace's events alone
	shareOtherItems = "other items" // whole, but the move-in names no item
	shareSplit      = "split"       // docs holds 4 more files, the move-in is split in parts
	shareSplitShort = "split short" // split, and the move-in's last part left out
)

// shareScenario: owner's home holds docs (1) with a (2), and b (3) at the root; docs is
// shared (stored as mode says), then b changes in home and, when a moved, a in the
// shared workspace.
func shareScenario(t *testing.T, mode string) (*memstore.Store, *chained, *chained) {
	t.Helper()
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	home, owner, dev := fixedID("home"), fixedID("owner"), fixedID("device")
	at := genStart
	src := &chained{t: t, s: s, w: domain.NewWorkspace(home), stream: domain.WorkspaceStream(home)}
	src.do(domain.CreateWorkspace{WorkspaceID: home, Name: "home", OwnerID: owner, At: at})
	item := func(temp int64, parent *domain.ItemID, folder bool, name string) domain.ItemMetadata {
		m := domain.ItemMetadata{TempID: &temp, Version: 1, ParentID: parent, Status: domain.StatusNew, ModifiedAt: at,
			Chunks: []string{}, IsFolder: folder, Filename: name, Mimetype: "inode/directory"}
		if !folder {
			m.Size, m.Checksum, m.Chunks, m.Mimetype = 10, 1, []string{"c"}, "text/plain"
		}
		return m
	}
	parent := domain.ItemID(-1)
	tree := domain.Commit{RequestID: "tree", WorkspaceID: home, UserID: owner, DeviceID: dev, At: at, NewItemIDs: []domain.ItemID{1, 2, 3},
		Items: []domain.ItemMetadata{item(-1, nil, true, "docs"), item(-2, &parent, false, "a"), item(-3, nil, false, "b")}, PrevHash: src.prev}
	split := mode == shareSplit || mode == shareSplitShort
	if split {
		for i := range 4 {
			tree.NewItemIDs = append(tree.NewItemIDs, domain.ItemID(4+i))
			tree.Items = append(tree.Items, item(int64(-4-i), &parent, false, "more"+string(rune('a'+i))))
		}
	}
	src.do(tree)

	cmd := domain.ShareFolder{RequestID: "share", UserID: owner, SourceID: home, FolderID: 1,
		Members: []uuid.UUID{fixedID("member")}, At: at.Add(time.Minute), SourcePrevHash: src.prev}
	if split {
		cmd.Limits.MaxEventBytes = 1000
	}
	target := src.w.ShareTarget(cmd)
	dst := &chained{t: t, s: s, w: domain.NewWorkspace(target), stream: domain.WorkspaceStream(target)}
	d, err := domain.DecideShare(src.w, dst.w, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if mode == shareOtherItems {
		in := d.Target[1].(domain.ItemsMovedIn)
		in.Items = nil
		// The events after it chain to the original: leave them out.
		d.Target = append(d.Target[:1:1], in)
	}
	if split && len(d.Target) < 5 {
		t.Fatalf("a split share: %d events in the shared workspace", len(d.Target))
	}
	if mode == shareSplitShort {
		// The last part and the events after it (chained to it) left out.
		last := len(d.Target) - 2
		d.Target = d.Target[:last]
	}
	appends := []eventstore.StreamAppend{src.records(d.Source), dst.records(d.Target)}
	switch mode {
	case shareSourceOnly:
		appends = appends[:1]
	case shareTargetOnly:
		appends = appends[1:]
	}
	if _, err := s.AppendMulti(ctxT(t), appends); err != nil {
		t.Fatal(err)
	}
	if mode == shareTargetOnly {
		return s, src, dst
	}
	b, _ := src.w.Item(3)
	b.ID, b.TempID, b.Version, b.Status, b.Size = ptrTo(domain.ItemID(3)), nil, 2, domain.StatusChanged, 11
	src.do(domain.Commit{RequestID: "after", WorkspaceID: home, UserID: owner, DeviceID: dev, At: at.Add(2 * time.Minute),
		Items: []domain.ItemMetadata{b}, PrevHash: src.prev})

	if a, ok := dst.w.Item(2); ok && mode == shareWhole {
		a.TempID, a.Version, a.Status, a.Size = nil, 2, domain.StatusChanged, 12
		dst.do(domain.Commit{RequestID: "in-shared", WorkspaceID: target, UserID: owner, DeviceID: dev, At: at.Add(3 * time.Minute),
			Items: []domain.ItemMetadata{a}, PrevHash: dst.prev})
	}
	return s, src, dst
}

// A share's two streams verify clean: ItemsMovedOut and ItemsMovedIn take their
// workspaceVersions, so the source's commits before and after the move are numbered
// without a gap, the shared workspace's chain starts afresh, and each half of the
// share finds the other. The log shows the move.
func TestVerifyCleanAcrossAShare(t *testing.T) {
	// A move split in parts verifies as one: the parts repeat their first part's
	// workspaceVersion and join into the other half.
	sp, spSrc, spDst := shareScenario(t, shareSplit)
	for _, streams := range [][]string{{spSrc.stream, spDst.stream}, {spSrc.stream}, {spDst.stream}} {
		r, err := newAuditor(t, sp, Config{PageSize: 2}).Verify(ctxT(t), streams...)
		if err != nil || !r.OK() {
			t.Fatalf("a split share's streams %v: %+v %v", streams, r.Streams, err)
		}
		for _, sr := range r.Streams {
			if want := map[string]int64{spSrc.stream: 3, spDst.stream: 1}[sr.Stream]; sr.WorkspaceVersion != want {
				t.Fatalf("%s of a split share at workspaceVersion %d, want %d", sr.Stream, sr.WorkspaceVersion, want)
			}
		}
	}
	s, src, dst := shareScenario(t, shareWhole)
	home := src.w.ID()
	r, err := newAuditor(t, s, Config{PageSize: 2}).Verify(ctxT(t), src.stream, dst.stream)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Streams[0].WorkspaceVersion != 3 || r.Streams[1].WorkspaceVersion != 2 {
		t.Fatalf("a share's streams: %+v", r.Streams)
	}
	var rows collect
	if err := newAuditor(t, s, Config{}).Log(ctxT(t), LogQuery{Workspace: home}, &rows); err != nil {
		t.Fatal(err)
	}
	var moved *Entry
	for i := range rows.rows {
		if rows.rows[i].Type == domain.TypeItemsMovedOut {
			moved = &rows.rows[i]
		}
	}
	if moved == nil || moved.WorkspaceVersion != 2 || moved.RequestID != "share" {
		t.Fatalf("the log's row of the move: %+v", moved)
	}
}

// Half a share is a break: a source stream whose ItemsMovedOut has no ItemsMovedIn in
// the shared workspace (and the other way round), found whether the other stream is
// verified too or not, and so is a move-in that names other items.
func TestVerifyFindsHalfAShare(t *testing.T) {
	for _, tc := range []struct {
		mode string
		// broken: which of (source, shared) must show BreakShare
		broken [2]bool
	}{
		{shareSourceOnly, [2]bool{true, false}},
		{shareTargetOnly, [2]bool{false, true}},
		{shareOtherItems, [2]bool{true, true}},
		{shareSplitShort, [2]bool{true, true}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s, src, dst := shareScenario(t, tc.mode)
			for i, stream := range []string{src.stream, dst.stream} {
				r, err := newAuditor(t, s, Config{}).Verify(ctxT(t), stream)
				if err != nil {
					t.Fatal(err)
				}
				b := r.Streams[0].Break
				if got := b != nil && b.Kind == BreakShare; got != tc.broken[i] {
					t.Errorf("%s alone: break %+v, want a share break: %v", stream, b, tc.broken[i])
				}
			}
			if r, err := newAuditor(t, s, Config{}).Verify(ctxT(t), src.stream, dst.stream); err != nil || r.OK() {
				t.Errorf("both streams: %+v %v, want a break", r, err)
			}
		})
	}
}

// An item's life crosses the share: asked of either workspace, it starts with the
// item's creation in the source workspace, shows the move out and the move in, and goes
// on with its change in the shared workspace.
func TestItemLifeAcrossAShare(t *testing.T) {
	s, src, dst := shareScenario(t, shareWhole)
	home, shared := src.w.ID(), dst.w.ID()
	for _, ws := range []uuid.UUID{home, shared} {
		var rows collect
		if err := newAuditor(t, s, Config{PageSize: 2}).ItemLife(ctxT(t), ws, 2, &rows); err != nil {
			t.Fatal(err)
		}
		type row struct {
			ws     uuid.UUID
			typ    string
			change string
		}
		want := []row{
			{home, domain.TypeCommitted, `created file "a" in item 1`},
			{home, domain.TypeItemsMovedOut, "moved out to workspace " + shared.String() + " (folder 1 shared)"},
			{shared, domain.TypeItemsMovedIn, "moved in from workspace " + home.String() + " with its 1 versions; parent item 1 → root"},
			{shared, domain.TypeCommitted, "content changed (size 10 → 12)"},
		}
		var got []row
		for _, r := range rows.rows {
			got = append(got, row{r.WorkspaceID, r.Type, r.Change})
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("life of item 2 asked of %s:\n got %+v\nwant %+v", ws, got, want)
		}
	}
	// A split move-in names the part and the versions it carried.
	sp, spSrc, _ := shareScenario(t, shareSplit)
	var split collect
	if err := newAuditor(t, sp, Config{}).ItemLife(ctxT(t), spSrc.w.ID(), 2, &split); err != nil || len(split.rows) != 3 ||
		!strings.Contains(split.rows[2].Change, "with versions 1 to 1 (part 1 of ") {
		t.Fatalf("life of item 2 across a split share: %+v %v", split.rows, err)
	}
	// An item that never moved keeps its life in one workspace.
	var rows collect
	if err := newAuditor(t, s, Config{}).ItemLife(ctxT(t), home, 3, &rows); err != nil || len(rows.rows) != 2 {
		t.Fatalf("life of item 3: %+v %v", rows.rows, err)
	}
}

func ptrTo[T any](v T) *T { return &v }
