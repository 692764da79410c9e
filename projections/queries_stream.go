package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/internal/offheap"
)

// ItemEncoder appends the encoding of one item version to dst and returns it. md, its
// strings and its chunks are only valid during the call: they alias the row being read.
type ItemEncoder = func(dst []byte, md *domain.ItemMetadata) []byte

// stampSQL reads what identifies a workspace's getChanges answer: its version, and the
// transaction that last wrote its row (xmin). Every commit rewrites the row; so do a
// rebuild and a restore, which may reach the same version with other items.
const stampSQL = `SELECT version, xmin::text::bigint FROM proj_workspaces.workspaces WHERE workspace_id = $1`

// ChangesStamp returns the workspace's version and a tag that changes whenever its row
// is written: together they name one content of the answer of Changes, so an answer
// encoded at a stamp may be served again while the stamp is the same. One primary-key
// lookup. It holds because the projector writes a commit's items and the workspace's
// new version in one transaction (apply.go): items never change without the row.
func (q *Queries) ChangesStamp(ctx context.Context, ws uuid.UUID) (version, tag int64, err error) {
	err = q.pool.QueryRow(ctx, stampSQL, ws).Scan(&version, &tag)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrWorkspaceNotFound
	}
	if err != nil {
		return 0, 0, fmt.Errorf("stamp of workspace %s: %w", ws, err)
	}
	return version, tag, nil
}

// streamChunk is how many rows one keyset query of EncodedChanges reads: more than
// readChunk, as rendering the rows costs less than holding them (a round trip per 2,000
// rows took a third of the time of a 100,000-item workspace); an answer refused as too
// large still stops within a chunk of the limit.
const streamChunk = 10000

// changesSelect reads the items of Changes by item id from $2 on, $3 at most; its
// columns are those decodeRow reads.
const changesSelect = `SELECT item_id, version, device_id, parent_id, parent_version,
	temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype
	FROM proj_workspaces.items WHERE workspace_id = $1 AND item_id > $2 ORDER BY item_id LIMIT $3`

// arenaPos is where one item's encoding lies in the arena of EncodedChanges.
type arenaPos struct {
	block      int32
	start, end int32 // the item's bytes; every item but the first has a comma before start
}

// Blocks of the arena: the first is small (most workspaces are), each next one twice
// the last, up to arenaMaxBlock. An item is never split: one that does not fit in what
// is left of a block starts the next (one larger than a block grows it).
const (
	arenaMinBlock = 4 << 10
	arenaMaxBlock = 1 << 20
)

// arena holds the encoded items as they are rendered, in blocks that are never copied
// to grow (a growing single buffer would copy the answer several times over), in item
// id order, separated by commas. Its largest blocks (arenaMaxBlock) are mapped outside
// Go's heap where the system can (internal/offheap): a full read of a large workspace
// renders its whole answer here before the answer is copied out in getChanges order,
// and on the heap that transient would raise the collector's goal to twice the answer
// plus what is live, pages the heap then keeps (44 MB at 100,000 items). Its owner
// releases it once the pieces made of it are copied (release).
type arena struct {
	blocks [][]byte
	items  int
	mapped [][]byte // the mappings of blocks outside the heap, whole
}

// block returns an empty block of size bytes: outside the heap at arenaMaxBlock.
func (a *arena) block(size int) []byte {
	if size == arenaMaxBlock {
		if b := offheap.Map(size); b != nil {
			a.mapped = append(a.mapped, b)
			return b[:0]
		}
	}
	return make([]byte, 0, size)
}

// release unmaps the blocks outside the heap: nothing may read the arena or a piece
// of it afterwards. An arena with none needs no release.
func (a *arena) release() {
	for _, b := range a.mapped {
		offheap.Unmap(b)
	}
	a.blocks, a.mapped = nil, nil
}

// releaser returns the function that releases the arena, nil when it holds nothing
// outside the heap.
func (a *arena) releaser() func() {
	if len(a.mapped) == 0 {
		return nil
	}
	return sync.OnceFunc(a.release)
}

// add renders an item with enc into the arena (after a comma, but the first) and
// returns where it lies. hint is what the item's encoding may take (its size
// estimate; 0: unknown): an item that would not fit in what is left of the last block
// starts the next one, so that a block outside the heap is never outgrown.
func (a *arena) add(enc ItemEncoder, md *domain.ItemMetadata, hint int) (block, start, end int32) {
	n := len(a.blocks)
	if n == 0 || cap(a.blocks[n-1])-len(a.blocks[n-1]) < max(arenaMinBlock/2, hint+1) {
		a.next(hint + 1)
		n++
	}
	b := a.blocks[n-1]
	from := len(b)
	if a.items > 0 {
		b = append(b, ',')
	}
	s := len(b)
	out := enc(b, md)
	if cap(out) != cap(b) && a.isMapped(n-1) {
		// The hint was short and append moved the block onto the heap: the mapped
		// block keeps what it had, and the item (its comma with it) starts a block
		// of its own.
		item, comma := out[from:], s-from
		a.next(len(item))
		n++
		out, s = append(a.blocks[n-1], item...), comma
	}
	a.items++
	a.blocks[n-1] = out
	return int32(n - 1), int32(s), int32(len(out))
}

// next starts a block with room for at least need bytes: twice the last one's size,
// from arenaMinBlock up to arenaMaxBlock, larger only for an item that needs it.
func (a *arena) next(need int) {
	size := arenaMinBlock
	if n := len(a.blocks); n > 0 {
		size = min(2*cap(a.blocks[n-1]), arenaMaxBlock)
	}
	a.blocks = append(a.blocks, a.block(max(size, need)))
}

// isMapped reports whether block i lies outside the heap.
func (a *arena) isMapped(i int) bool {
	b := a.blocks[i]
	if cap(b) == 0 {
		return false
	}
	p := &b[:1][0]
	for _, m := range a.mapped {
		if p == &m[0] {
			return true
		}
	}
	return false
}

// EncodedChanges answers what Changes answers, as the JSON array of the items rendered
// by enc (parents first, as Changes orders them), with the stamp (ChangesStamp) it was
// read at, from one snapshot. The array is the concatenation of pieces, which share
// the buffers the rows were rendered into as they arrived: no item is held as a
// struct, and nothing is copied (the reply is the one copy). It stops with
// protocol.ErrResultTooLarge as soon as the estimated size passes MaxResultBytes, and
// grows the request's memory reservation as Changes does.
func (q *Queries) EncodedChanges(ctx context.Context, ws uuid.UUID, enc ItemEncoder) (pieces [][]byte, version, tag int64, err error) {
	a, err := q.EncodedAnswer(ctx, ws, nil, enc)
	a.Detach()
	return a.Pieces, a.Version, a.Tag, err
}

// EncodedAnswer is EncodedChanges with the answer's items (where each lies in the
// array, for a later Patch). Given a base (an answer of the workspace kept from an
// earlier read), it reads only the items changed since the base's version and builds
// the answer from the base (changes_delta.go) when it can; otherwise, or with no base,
// it reads every item. The pieces of a full read of a large workspace lie outside the
// heap until the answer's Release.
func (q *Queries) EncodedAnswer(ctx context.Context, ws uuid.UUID, base *changeset.Base, enc ItemEncoder) (changeset.Answer, error) {
	if base != nil {
		a, ok, err := q.patchedAnswer(ctx, ws, base, enc)
		if err != nil || ok {
			return a, err
		}
	}
	var ar arena
	answered := false
	defer func() { // on an error, and on a panic the caller recovers from
		if !answered {
			ar.release()
		}
	}()
	var index []changeset.Item
	var where []arenaPos
	var version, tag int64
	sz := newSizer(ctx, q.MaxResultBytes)
	err := q.readTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, stampSQL, ws).Scan(&version, &tag); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrWorkspaceNotFound
			}
			return err
		}
		var dec rowDecoder
		dec.md.WorkspaceID = ws
		for after := int64(0); ; {
			rows, err := tx.Query(ctx, changesSelect, ws, after, q.streamChunk)
			if err != nil {
				return err
			}
			n := len(index)
			if index, where, err = dec.encodeRows(rows, enc, sz, &ar, index, where); err != nil {
				return err
			}
			if len(index)-n < q.streamChunk {
				return sz.flush()
			}
			after = index[len(index)-1].ID
		}
	})
	if err != nil {
		return changeset.Answer{}, tooLarge(fmt.Errorf("changes of workspace %s: %w", ws, err))
	}
	pieces := ar.treeOrdered(index, where)
	answered = true
	return changeset.Answer{Pieces: pieces, Items: index, Version: version, Tag: tag, Release: ar.releaser()}, nil
}

// encodeRows renders the rows of one changesSelect query into a and records each item
// and where it lies.
func (d *rowDecoder) encodeRows(rows pgx.Rows, enc ItemEncoder, sz *sizer, a *arena, index []changeset.Item, where []arenaPos) ([]changeset.Item, []arenaPos, error) {
	defer rows.Close()
	for rows.Next() {
		if err := d.decode(rows); err != nil {
			return nil, nil, err
		}
		size, err := sz.add(&d.md)
		if err != nil {
			return nil, nil, err
		}
		var p arenaPos
		p.block, p.start, p.end = a.add(enc, &d.md, int(size))
		index = append(index, itemOf(&d.md, size, p.end-p.start))
		where = append(where, p)
	}
	return index, where, rows.Err()
}

// itemOf is the changeset.Item of md, rendered in n bytes (Off is set once the answer
// is laid out).
func itemOf(md *domain.ItemMetadata, size int64, n int32) changeset.Item {
	it := changeset.Item{ID: int64(*md.ID), Parent: -1, Len: n, Size: int32(min(size, math.MaxInt32))}
	if md.ParentID != nil {
		it.Parent = int64(*md.ParentID)
	}
	return it
}

// treeOrdered returns the pieces of the JSON array of the items of the arena (index,
// in item id order, and where each lies) in getChanges order (changeset.Order), and
// sets each item's offset in their concatenation. Items that follow each other in the
// arena and in that order (all of them, when the order is the id order: a parent is
// usually made before its children) are one piece.
func (a *arena) treeOrdered(index []changeset.Item, where []arenaPos) [][]byte {
	pieces := [][]byte{{'['}}
	var cur []byte // the piece being extended
	prev := int32(-1)
	pos := int64(1)
	for i, k := range changeset.Order(index) {
		e := where[k]
		if i > 0 {
			pos++ // its comma
		}
		index[k].Off = pos
		pos += int64(index[k].Len)
		switch {
		case i > 0 && k == prev+1 && e.block == where[prev].block:
			cur = cur[:len(cur)+int(e.end-where[prev].end)] // its comma and bytes follow
		default:
			if cur != nil {
				pieces = append(pieces, slices.Clip(cur))
			}
			start := e.start
			switch {
			case i > 0 && k > 0:
				start-- // with the comma before it
			case i > 0:
				pieces = append(pieces, []byte{','}) // the first by id has none
			}
			cur = a.blocks[e.block][start:e.end]
		}
		prev = k
	}
	if cur != nil {
		pieces = append(pieces, slices.Clip(cur))
	}
	return append(pieces, []byte{']'})
}

// rowDecoder reads changesSelect rows into one reused ItemMetadata, from the binary
// values of the row without copying its strings (they alias the row until the next
// one is read).
type rowDecoder struct {
	md                    domain.ItemMetadata
	id, parent            domain.ItemID // what md.ID and md.ParentID point to
	parentVersion, tempID int64         // what md.ParentVersion and md.TempID point to
	chunks                []string      // md.Chunks, reused
	checked, binary       bool          // the result's format was looked at; it is binary
}

// pgEpoch is PostgreSQL's timestamp epoch (binary timestamptz counts microseconds from it).
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// decode reads the current row. Values come in binary format (pgx's default); a
// connection that answers in text (the simple protocol) is read with Scan instead.
func (d *rowDecoder) decode(rows pgx.Rows) error {
	if !d.checked {
		d.checked, d.binary = true, binaryRows(rows)
	}
	if !d.binary {
		return d.scan(rows)
	}
	v := rows.RawValues()
	if len(v) != 14 {
		return fmt.Errorf("changes row: %d columns, want 14", len(v))
	}
	md := &d.md
	d.id = domain.ItemID(int8Of(v[0]))
	md.ID = &d.id
	md.Version = int8Of(v[1])
	if len(v[2]) != 16 {
		return fmt.Errorf("changes row of item %d: device_id of %d bytes", d.id, len(v[2]))
	}
	md.DeviceID = uuid.UUID(v[2])
	md.ParentID = nil
	if v[3] != nil {
		d.parent = domain.ItemID(int8Of(v[3]))
		md.ParentID = &d.parent
	}
	md.ParentVersion = optInt8(v[4], &d.parentVersion)
	md.TempID = optInt8(v[5], &d.tempID)
	md.Status = domain.Status(aliasString(v[6]))
	us := int8Of(v[7])
	if us == math.MaxInt64 || us == math.MinInt64 {
		return fmt.Errorf("changes row of item %d: modified_at is infinite", d.id)
	}
	md.ModifiedAt = pgEpoch.Add(time.Duration(us) * time.Microsecond)
	md.Checksum = int8Of(v[8])
	var err error
	if d.chunks, err = textArray(v[9], d.chunks[:0]); err != nil {
		return fmt.Errorf("changes row of item %d: chunks: %w", d.id, err)
	}
	md.Chunks = d.chunks
	md.Size = int8Of(v[10])
	md.IsFolder = len(v[11]) == 1 && v[11][0] != 0
	md.Filename = aliasString(v[12])
	md.Mimetype = aliasString(v[13])
	return nil
}

// binaryRows reports whether the rows' non-text columns come in binary format.
func binaryRows(rows pgx.Rows) bool {
	for i, f := range rows.FieldDescriptions() {
		switch i {
		case 6, 12, 13: // text: the same bytes in either format
		default:
			if f.Format != pgx.BinaryFormatCode {
				return false
			}
		}
	}
	return true
}

// scan reads the current row with pgx's Scan (allocating), for text-format results.
func (d *rowDecoder) scan(rows pgx.Rows) error {
	md := &d.md
	var id int64
	var parent *int64
	if err := rows.Scan(&id, &md.Version, &md.DeviceID, &parent, &md.ParentVersion, &md.TempID, &md.Status,
		&md.ModifiedAt, &md.Checksum, &md.Chunks, &md.Size, &md.IsFolder, &md.Filename, &md.Mimetype); err != nil {
		return err
	}
	d.id = domain.ItemID(id)
	md.ID = &d.id
	md.ParentID = nil
	if parent != nil {
		d.parent = domain.ItemID(*parent)
		md.ParentID = &d.parent
	}
	if md.Chunks == nil {
		md.Chunks = []string{}
	}
	return nil
}

func int8Of(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func optInt8(b []byte, into *int64) *int64 {
	if b == nil {
		return nil
	}
	*into = int8Of(b)
	return into
}

// aliasString views b as a string without copying: valid while b is.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// textArray decodes a one-dimensional text[] in binary format into out (strings
// aliasing b). A NULL array reads as empty; a NULL element is an error.
func textArray(b []byte, out []string) ([]string, error) {
	if b == nil {
		return out, nil
	}
	if len(b) < 12 {
		return nil, errors.New("short array header")
	}
	ndim := int32(binary.BigEndian.Uint32(b))
	if ndim == 0 {
		return out, nil
	}
	if ndim != 1 || len(b) < 20 {
		return nil, fmt.Errorf("array of %d dimensions", ndim)
	}
	n := int(int32(binary.BigEndian.Uint32(b[12:])))
	rest := b[20:]
	for range n {
		if len(rest) < 4 {
			return nil, errors.New("short array element")
		}
		l := int(int32(binary.BigEndian.Uint32(rest)))
		rest = rest[4:]
		if l < 0 {
			return nil, errors.New("NULL element")
		}
		if len(rest) < l {
			return nil, errors.New("short array element")
		}
		out = append(out, aliasString(rest[:l]))
		rest = rest[l:]
	}
	return out, nil
}
