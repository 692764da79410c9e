package projections

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// TestLatestItemsKeepsEachItemsHighestVersion: latestItems keeps every item's highest
// version (an older version arriving later changes nothing), leaves out the items that
// moved out of their workspace when it is read for COPY, and lets go of everything past
// its bound.
func TestLatestItemsKeepsEachItemsHighestVersion(t *testing.T) {
	ws, other := uuid.New(), uuid.New()
	tx := func(rows ...keptRow) *bulkKept {
		k := &bulkKept{}
		for i := range rows {
			// The tuple's bytes name the item and version, so the COPY data shows which was kept.
			start := len(k.buf)
			k.buf = append(k.buf, byte(rows[i].key.id), byte(rows[i].version))
			rows[i].start, rows[i].end = start, len(k.buf)
		}
		k.rows = rows
		return k
	}
	r := func(w uuid.UUID, id domain.ItemID, version int64) keptRow {
		return keptRow{key: itemKey{w, id}, version: version}
	}
	l := newLatestItems(1 << 20)
	l.keep(tx(r(ws, 1, 1), r(ws, 2, 1), r(ws, 1, 3)))
	l.keep(tx(r(ws, 1, 2), r(other, 1, 1), r(ws, 2, 2)))
	k := tx(r(ws, 3, 1))
	k.movedOut = []itemKey{{ws, 3}}
	l.keep(k)
	if !l.usable() {
		t.Fatal("within its bound, the tracker must be usable")
	}
	// The reader holds what it reads: pgconn may still read after CopyFrom returned on a
	// server error, while the caller drops the tracker.
	reader := &latestReader{rows: l.rows, movedOut: l.movedOut, cur: []byte(copyHeader)}
	l.drop()
	got, err := io.ReadAll(reader)
	if err != nil {
		t.Fatal(err)
	}
	// Item 1 of ws at version 3 (2 came later but is older), item 2 at 2, item 1 of the
	// other workspace; item 3 moved out.
	want := copyHeader + "\x01\x03" + "\x02\x02" + "\x01\x01" + "\xff\xff"
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("COPY data %q, want %q", got, want)
	}

	small := newLatestItems(latestRowOverhead + 10)
	small.keep(tx(r(ws, 1, 1)))
	if !small.usable() {
		t.Fatal("one item within the bound: usable")
	}
	small.keep(tx(r(ws, 2, 1)))
	if small.usable() || small.size() != 0 || small.rows != nil {
		t.Fatalf("past its bound the tracker must let go of everything: usable %v, %d bytes", small.usable(), small.size())
	}
	small.keep(tx(r(ws, 3, 1))) // nothing: it stays dropped
	if small.usable() || newLatestItems(0) != nil || newLatestItems(-1).usable() {
		t.Fatal("a dropped or disabled tracker must stay unusable")
	}
}

// TestBulkReplayKeepsOnlyCommittedItems: a bulk replay keeps in memory only the item
// versions of committed batches. A batch holding an event PostgreSQL refuses (a CHECK
// constraint the test adds to the scratch item_history) fails whole and is applied
// again in parts; the refused event, a newer version of an existing item, is set
// aside. The items copied from memory must equal those computed from item_history in
// SQL, which holds only what committed.
func TestBulkReplayKeepsOnlyCommittedItems(t *testing.T) {
	e := newEnv(t)
	g := newGen(t, 31)
	e.append(t, g.history(2, 3, 40))
	w := g.ws[0]
	var id domain.ItemID
	for _, f := range w.files {
		id = f
		break
	}
	if id == 0 {
		t.Fatal("the generated workspace has no file")
	}
	poison := g.next(w, id, domain.StatusRenamed)
	poison.Filename = "poison"
	var bs []batch
	for range 5 {
		bs = append(bs, batch{w.stream, []eventstore.Record{g.randomCommit(w)}})
	}
	bs = append(bs, batch{w.stream, []eventstore.Record{g.committed(w, []domain.ItemOutcome{{CommittedVersion: poison.Version,
		Succeeded: true, Stored: true, Metadata: &poison}})}})
	for range 5 {
		bs = append(bs, batch{g.ws[1].stream, []eventstore.Record{g.randomCommit(g.ws[1])}})
	}
	e.append(t, bs)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := workspacesModel
	const scratch = "proj_workspaces_latest_test"
	if err := dropSchema(ctx, e.pool, scratch); err != nil {
		t.Fatal(err)
	}
	if err := migrateSchema(ctx, e.pool, m, scratch); err != nil {
		t.Fatal(err)
	}
	if _, err := dropBulkIndexes(ctx, e.pool, m, scratch); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `ALTER TABLE `+scratch+`.item_history ADD CONSTRAINT no_poison CHECK (filename <> 'poison')`); err != nil {
		t.Fatal(err)
	}
	cfg := RebuildConfig{Pool: e.pool, Source: e.store, Logger: e.log}.withDefaults()
	latest := newLatestItems(cfg.LatestItemsBytes)
	last := e.lastPosition(t) // the whole history visible (a transaction open elsewhere holds it back)
	cp, err := replay(ctx, cfg, m, scratch, &last, true, 0, time.Now(), latest)
	if err != nil {
		t.Fatal(err)
	}
	var aside int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM `+scratch+`.set_aside`).Scan(&aside); err != nil {
		t.Fatal(err)
	}
	if aside != 1 || cp.Events == 0 {
		t.Fatalf("replayed %d events with %d set aside, want the poison set aside", cp.Events, aside)
	}
	if !latest.usable() {
		t.Fatal("the tracker let go of a small history")
	}
	if err := trimBulk(ctx, e.pool, m, scratch); err != nil {
		t.Fatal(err)
	}
	if err := fillItems(ctx, e.pool, scratch, latest); err != nil {
		t.Fatal(err)
	}
	fromMemory := dump(t, e.pool, m, scratch)["items"]
	if err := fillItems(ctx, e.pool, scratch, nil); err != nil {
		t.Fatal(err)
	}
	fromSQL := dump(t, e.pool, m, scratch)["items"]
	if len(fromSQL) == 0 || !reflect.DeepEqual(fromMemory, fromSQL) {
		t.Errorf("items copied from memory differ from those computed from item_history:\n only in memory: %v\n only in SQL: %v",
			missing(fromSQL, fromMemory), missing(fromMemory, fromSQL))
	}
	if err := dropSchema(ctx, e.pool, scratch); err != nil {
		t.Fatal(err)
	}
}

// missing returns the rows of a that b lacks.
func missing(b, a []string) []string {
	var out []string
	for _, r := range a {
		if !slices.Contains(b, r) {
			out = append(out, r)
		}
	}
	return out
}
