package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/internal/offheap"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// oldEncoding is the answer of getChanges as it was encoded before streaming: the items
// of Changes as wire structs, marshalled in one piece.
func oldEncoding(t *testing.T, q *Queries, ws uuid.UUID) ([]byte, int64) {
	t.Helper()
	items, v, err := q.Changes(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(wire.FromItems(items))
	if err != nil {
		t.Fatal(err)
	}
	return b, v
}

// unicodeCommit adds to the fixture's workspace a folder and files whose names and
// chunks need every kind of JSON escape, one of them moved under a folder made after it.
func unicodeCommit(t *testing.T, f *fixture) batch {
	g, w := f.g, f.w
	late := g.newItem(w, nil, false, "déjà vu 日本語 🎉 <a href=\"x\">&amp;</a> \u2028\u2029 tab\there\\")
	late.Mimetype = "text/plain; charset=\"utf-8\" \x01\x1f\x7f"
	late.Chunks = []string{"ü", "\n\r\b\f", "{NULL}", ""}
	dir := g.newItem(w, nil, true, "Ω folder ‮")
	mv := late
	mv.Version, mv.Status, mv.TempID, mv.ParentID = 2, domain.StatusMoved, nil, dir.ID
	mv.ModifiedAt = g.tick().Add(123456789) // sub-millisecond part: truncated on the wire
	recs := []eventstore.Record{
		g.committed(w, []domain.ItemOutcome{w.store(late), w.store(dir)}),
		g.committed(w, []domain.ItemOutcome{w.store(mv)}),
	}
	return batch{w.stream, recs}
}

// TestEncodedChangesEqualsTheOldEncoding checks that the streamed getChanges body is
// byte for byte the old one (Changes, wire.FromItems, json.Marshal) on the fixture
// (deleted items, folders, moves, a child with a smaller id than its parent), on names
// and chunks needing every JSON escape, and on a generated history of many workspaces.
func TestEncodedChangesEqualsTheOldEncoding(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t)
	e.append(t, f.batches)
	e.append(t, []batch{unicodeCommit(t, f)})
	g := newGen(t, 77)
	e.append(t, g.history(3, 6, 600))
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	ctx := context.Background()

	// A pool on the simple protocol gets text-format rows: those are scanned, not decoded.
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	simple, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simple.Close)
	textQ := NewQueries(simple)

	workspaces := []*wsSim{f.w, f.shared}
	workspaces = append(workspaces, g.ws...)
	for _, w := range workspaces {
		want, wantV := oldEncoding(t, e.q, w.id)
		pieces, v, tag, err := e.q.EncodedChanges(ctx, w.id, wire.AppendItem)
		if err != nil {
			t.Fatal(err)
		}
		got := bytes.Join(pieces, nil)
		textPieces, _, _, err := textQ.EncodedChanges(ctx, w.id, wire.AppendItem)
		if err != nil {
			t.Fatalf("text format: %v", err)
		}
		if text := bytes.Join(textPieces, nil); !bytes.Equal(text, want) {
			t.Fatalf("workspace %s: body from text-format rows\n%s\nwant\n%s", w.id, text, want)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("workspace %s: streamed body\n%s\nwant\n%s", w.id, got, want)
		}
		if w == f.w {
			for _, s := range []string{`日本語 🎉 \u003ca href=\"x\"\u003e\u0026amp;`, `\u2028\u2029 tab\there\\`, `\u0001\u001f`, `"\n\r\b\f"`, `"Ω folder ‮"`} {
				if !bytes.Contains(got, []byte(s)) {
					t.Errorf("the fixture's body lacks %s:\n%s", s, got)
				}
			}
		}
		sv, stag, err := e.q.ChangesStamp(ctx, w.id)
		if err != nil || v != wantV || sv != v || stag != tag {
			t.Fatalf("workspace %s: stamp (%d, %d) and read at (%d, %d), version %d: %v", w.id, sv, stag, v, tag, wantV, err)
		}
	}
	if _, _, _, err := e.q.EncodedChanges(ctx, uuid.New(), wire.AppendItem); !errors.Is(err, ErrWorkspaceNotFound) {
		t.Errorf("unknown workspace: %v, want ErrWorkspaceNotFound", err)
	}
	if _, _, err := e.q.ChangesStamp(ctx, uuid.New()); !errors.Is(err, ErrWorkspaceNotFound) {
		t.Errorf("stamp of an unknown workspace: %v, want ErrWorkspaceNotFound", err)
	}
}

// TestEncodedChangesKeepsTheLimits checks that the streamed getChanges refuses an
// answer over MaxResultBytes as Changes does, at the same bound.
func TestEncodedChangesKeepsTheLimits(t *testing.T) {
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
	defer func(b int64) { e.q.MaxResultBytes = b }(e.q.MaxResultBytes)
	for _, tc := range []struct {
		limit int64
		fits  bool
	}{{size - 1, false}, {size, true}, {1, false}} {
		e.q.MaxResultBytes = tc.limit
		_, _, _, err := e.q.EncodedChanges(ctx, f.w.id, wire.AppendItem)
		if tc.fits != (err == nil) || (err != nil && !errors.Is(err, protocol.ErrResultTooLarge)) {
			t.Errorf("limit %d (answer estimated at %d bytes): err %v", tc.limit, size, err)
		}
	}
}

// TestEncodedTreeOrder checks the order of the streamed answer against treeOrder on
// hand-made shapes (a parent after its children, a missing parent, a cycle and its
// descendants, the first item by id placed later) and on random trees spanning many
// arena blocks, and that the pieces make the items in that order, comma-separated.
func TestEncodedTreeOrder(t *testing.T) {
	type shape struct {
		name    string
		n       int
		parents map[int64]int64 // id -> parent (absent: root); ids 1..n
	}
	shapes := []shape{
		{"flat", 6, map[int64]int64{}},
		{"parent after children", 6, map[int64]int64{1: 5, 2: 5, 3: 2, 4: 9}},
		{"missing parent", 6, map[int64]int64{2: 100, 3: 2}},
		{"cycle with descendants", 6, map[int64]int64{1: 2, 2: 1, 3: 1, 5: 4}},
		{"self parent", 6, map[int64]int64{3: 3, 4: 3}},
		{"first by id moved last", 6, map[int64]int64{1: 6}},
		{"empty", 0, nil},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 4 {
		sh := shape{fmt.Sprintf("random %d", i), 2000, map[int64]int64{}}
		for id := int64(1); id <= int64(sh.n); id++ {
			if rng.IntN(4) > 0 {
				sh.parents[id] = 1 + rng.Int64N(int64(sh.n)) // cycles too
			}
		}
		shapes = append(shapes, sh)
	}
	enc := func(dst []byte, md *domain.ItemMetadata) []byte {
		return fmt.Appendf(dst, `{"id":%d,"pad":"%s"}`, *md.ID, strings.Repeat("x", int(*md.ID%97)))
	}
	for _, tc := range shapes {
		t.Run(tc.name, func(t *testing.T) {
			var rows []itemRow
			var index []changeset.Item
			var where []arenaPos
			var a arena
			for id := int64(1); id <= int64(tc.n); id++ {
				md := domain.ItemMetadata{ID: itemID(id)}
				if p, ok := tc.parents[id]; ok {
					md.ParentID = itemID(p)
				}
				var e arenaPos
				e.block, e.start, e.end = a.add(enc, &md, 0)
				rows = append(rows, itemRow{md: md})
				index = append(index, itemOf(&md, 0, e.end-e.start))
				where = append(where, e)
			}
			ordered := treeOrder(rows)
			var got []domain.ItemID
			for _, k := range changeset.Order(index) {
				got = append(got, domain.ItemID(index[k].ID))
			}
			if want := ids(ordered); !slices.Equal(got, want) {
				t.Fatalf("order %v, want %v", got, want)
			}
			want := []byte{'['}
			for i := range ordered {
				if i > 0 {
					want = append(want, ',')
				}
				want = enc(want, &ordered[i])
			}
			want = append(want, ']')
			pieces := a.treeOrdered(index, where)
			body := bytes.Join(pieces, nil)
			if !bytes.Equal(body, want) {
				t.Fatalf("pieces make\n%s\nwant\n%s", body, want)
			}
			for _, it := range index { // each item's offset in the answer
				md := domain.ItemMetadata{ID: itemID(it.ID)}
				if got := body[it.Off : it.Off+int64(it.Len)]; !bytes.Equal(got, enc(nil, &md)) {
					t.Fatalf("item %d at %d: %s", it.ID, it.Off, got)
				}
			}
			if tc.n > 1000 && len(a.blocks) < 5 {
				t.Fatalf("%d items in %d blocks: the test should span several", tc.n, len(a.blocks))
			}
		})
	}
}

// The largest blocks of a full read's arena lie outside the heap until the answer is
// released, on an error too: the pieces make the same text as the answer detached
// onto the heap, and once released nothing of the read stays mapped.
func TestFullReadRendersOutsideTheHeap(t *testing.T) {
	e := newEnv(t)
	w := backlogWorkspace(t, e.store, e.pool, 3000, 100)
	ctx := context.Background()
	pad := strings.Repeat("p", 1000) // 3,000 items of ~1 kB: blocks of 1 MiB after the first ramp
	enc := func(dst []byte, md *domain.ItemMetadata) []byte {
		return fmt.Appendf(dst, `{"id":%d,"pad":"%s"}`, *md.ID, pad)
	}
	before := offheap.Mapped()
	a, err := e.q.EncodedAnswer(ctx, w.id, nil, enc)
	if err != nil {
		t.Fatal(err)
	}
	if offheap.Supported && (a.Release == nil || offheap.Mapped()-before < 1<<20) {
		t.Fatalf("a 3 MB answer: release %v, %d bytes mapped outside the heap", a.Release != nil, offheap.Mapped()-before)
	}
	text, estimate := bytes.Join(a.Pieces, nil), changeset.Estimate(a.Items)
	a.Detach()
	if offheap.Mapped() != before || a.Release != nil || len(a.Pieces) != 1 || !bytes.Equal(a.Pieces[0], text) {
		t.Fatalf("detached: %d bytes still mapped, %d pieces, same text %v", offheap.Mapped()-before, len(a.Pieces), bytes.Equal(bytes.Join(a.Pieces, nil), text))
	}
	if !bytes.HasPrefix(text, []byte(`[{"id":`)) || bytes.Count(text, []byte(pad)) != 3000 {
		t.Fatalf("the answer is not the workspace's 3,000 items: %d bytes", len(text))
	}
	q := NewQueries(e.pool)
	q.MaxResultBytes = estimate * 2 / 3 // refused at ~2,000 items, after ~2 MB is rendered
	if _, err := q.EncodedAnswer(ctx, w.id, nil, enc); !errors.Is(err, protocol.ErrResultTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if offheap.Mapped() != before {
		t.Fatalf("a refused read left %d bytes mapped", offheap.Mapped()-before)
	}
}

// Items larger than what a block has left (a file of many chunks) never move a block
// outside the heap onto it: with the size hint an item that would not fit starts the
// next block, and without one (a hint too short) the item moves to a block of its own
// while the mapped block keeps what it had. Either way every block of arenaMaxBlock is
// a mapping, and the pieces make the items in order.
func TestArenaLargeItemsStayOutsideTheHeap(t *testing.T) {
	// Where mappings are not supported (offheap.Supported false) every block is on the
	// heap: the pieces must still make the items in order.
	for _, size := range []int{1000, 3000, 5000, 9000, 3 << 20} {
		for _, hinted := range []bool{true, false} {
			var a arena
			pad := strings.Repeat("x", size)
			enc := func(dst []byte, md *domain.ItemMetadata) []byte {
				return fmt.Appendf(dst, `{"id":%d,"p":"%s"}`, *md.ID, pad)
			}
			var index []changeset.Item
			var where []arenaPos
			want := []byte{'['}
			for id := range int64(max(4, (8<<20)/size)) {
				md := domain.ItemMetadata{ID: itemID(id + 1)}
				hint := 0
				if hinted {
					hint = len(enc(nil, &md))
				}
				var e arenaPos
				e.block, e.start, e.end = a.add(enc, &md, hint)
				index = append(index, itemOf(&md, 0, e.end-e.start))
				where = append(where, e)
				if id > 0 {
					want = append(want, ',')
				}
				want = enc(want, &md)
			}
			want = append(want, ']')
			held := map[*byte]bool{}
			for i, b := range a.blocks {
				if a.isMapped(i) {
					held[&b[:1][0]] = true
				} else if offheap.Supported && hinted && cap(b) >= arenaMaxBlock && size < arenaMaxBlock { // only an item larger than a block needs one that large on the heap
					t.Errorf("items of %d bytes, hinted: block %d of %d (%d bytes) is on the heap", size, i, len(a.blocks), cap(b))
				}
			}
			if (offheap.Supported && size < arenaMaxBlock && len(a.mapped) == 0) || len(held) != len(a.mapped) {
				t.Errorf("items of %d bytes, hinted %v: %d of %d mappings still hold a block (an outgrown one was copied onto the heap)", size, hinted, len(held), len(a.mapped))
			}
			if got := bytes.Join(a.treeOrdered(index, where), nil); !bytes.Equal(got, want) {
				t.Fatalf("items of %d bytes, hinted %v: the pieces make %d bytes, want %d", size, hinted, len(got), len(want))
			}
			a.release()
		}
	}
}

// A full read whose encoder panics (rpc's dispatch recovers a handler's panic) leaves
// nothing mapped.
func TestFullReadPanicReleasesItsBlocks(t *testing.T) {
	e := newEnv(t)
	w := backlogWorkspace(t, e.store, e.pool, 3000, 100)
	pad := strings.Repeat("p", 1000)
	n := 0
	enc := func(dst []byte, md *domain.ItemMetadata) []byte {
		if n++; n == 2500 {
			panic("encoder bug")
		}
		return append(append(dst, `{"pad":"`...), pad+`"}`...)
	}
	before := offheap.Mapped()
	func() {
		defer func() { _ = recover() }()
		_, _ = e.q.EncodedAnswer(context.Background(), w.id, nil, enc)
	}()
	if n < 2500 {
		t.Fatalf("the encoder ran %d times, the read never reached the panic", n)
	}
	if leaked := offheap.Mapped() - before; leaked != 0 {
		t.Errorf("%d bytes stay mapped after a recovered panic in a full read", leaked)
	}
}
