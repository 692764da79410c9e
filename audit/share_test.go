package audit

import (
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

// A share's two streams verify clean: ItemsMovedOut and ItemsMovedIn take their
// workspaceVersions, so the source's commits before and after the move are numbered
// without a gap, and the shared workspace's chain starts afresh. The log shows the move.
func TestVerifyCleanAcrossAShare(t *testing.T) {
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
	src.do(domain.Commit{RequestID: "tree", WorkspaceID: home, UserID: owner, DeviceID: dev, At: at, NewItemIDs: []domain.ItemID{1, 2, 3},
		Items: []domain.ItemMetadata{item(-1, nil, true, "docs"), item(-2, &parent, false, "a"), item(-3, nil, false, "b")}, PrevHash: src.prev})

	cmd := domain.ShareFolder{RequestID: "share", UserID: owner, SourceID: home, FolderID: 1,
		Members: []uuid.UUID{fixedID("member")}, At: at.Add(time.Minute), SourcePrevHash: src.prev}
	target := src.w.ShareTarget(cmd)
	dst := &chained{t: t, s: s, w: domain.NewWorkspace(target), stream: domain.WorkspaceStream(target)}
	d, err := domain.DecideShare(src.w, dst.w, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendMulti(ctxT(t), []eventstore.StreamAppend{src.records(d.Source), dst.records(d.Target)}); err != nil {
		t.Fatal(err)
	}
	b, _ := src.w.Item(3)
	b.ID, b.TempID, b.Version, b.Status, b.Size = ptrTo(domain.ItemID(3)), nil, 2, domain.StatusChanged, 11
	src.do(domain.Commit{RequestID: "after", WorkspaceID: home, UserID: owner, DeviceID: dev, At: at.Add(2 * time.Minute),
		Items: []domain.ItemMetadata{b}, PrevHash: src.prev})

	r, err := newAuditor(t, s, Config{PageSize: 2}).Verify(ctxT(t), src.stream, dst.stream)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Streams[0].WorkspaceVersion != 3 || r.Streams[1].WorkspaceVersion != 1 {
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

func ptrTo[T any](v T) *T { return &v }
