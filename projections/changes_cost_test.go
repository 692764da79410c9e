package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// backlogWorkspace appends a workspace whose history is commits of perCommit new files
// each, changes item versions in all, with a commit storing nothing (its only item
// failed) every 7th version, and rebuilds the workspaces model. It returns the workspace.
func backlogWorkspace(t testing.TB, store eventstore.Store, pool *pgxpool.Pool, changes, perCommit int) *wsSim {
	t.Helper()
	g := newGen(t, 11)
	appendAll(t, store, []batch{g.user()})
	w, bt := g.workspace(0, false)
	appendAll(t, store, []batch{bt})
	var recs []eventstore.Record
	flush := func() {
		appendAll(t, store, []batch{{w.stream, recs}})
		recs = nil
	}
	for made := 0; made < changes; {
		if w.version%7 == 6 {
			cur := w.items[w.files[0]].Clone()
			recs = append(recs, g.committed(w, []domain.ItemOutcome{{CommittedVersion: cur.Version - 1, Reason: domain.ReasonWrongVersion, Metadata: &cur}}))
			continue
		}
		var outs []domain.ItemOutcome
		for range min(perCommit, changes-made) {
			outs = append(outs, w.store(g.newItem(w, nil, false, fmt.Sprintf("f%d", made))))
			made++
		}
		recs = append(recs, g.committed(w, outs))
		if len(recs) == 500 {
			flush()
		}
	}
	last := appendAll(t, store, []batch{{w.stream, recs}})
	// The store may show the latest appends to readers a moment later: rebuild until the
	// model holds them all.
	testenv.Eventually(t, time.Minute, func() error {
		res, err := Rebuild(context.Background(), RebuildConfig{Pool: pool, Source: store}, ModelWorkspaces)
		if err != nil {
			return err
		}
		if res.Position.Less(last) {
			return fmt.Errorf("rebuilt up to %s, appended up to %s", res.Position, last)
		}
		return nil
	})
	return w
}

// rowCounter is a pgx query tracer summing the rows the server returned (the SELECT
// command tags), drained ones included.
type rowCounter struct {
	mu   sync.Mutex
	rows int64
}

func (c *rowCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (c *rowCounter) TraceQueryEnd(_ context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if d.CommandTag.Select() {
		c.mu.Lock()
		c.rows += d.CommandTag.RowsAffected()
		c.mu.Unlock()
	}
}

func (c *rowCounter) take() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.rows
	c.rows = 0
	return n
}

// TestChangesSinceReadsOnlyThePage checks that a page costs the rows of the page, not
// of the backlog after it: the server returns at most the page's item versions, one
// look-ahead chunk and the page's items, wherever the page starts.
func TestChangesSinceReadsOnlyThePage(t *testing.T) {
	e := newEnv(t)
	const changes, perCommit, limit = 3000, 5, 10
	w := backlogWorkspace(t, e.store, e.pool, changes, perCommit)
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	counter := &rowCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	q := NewQueries(pool)
	// workspace row + page rows (limit) + look-ahead chunk (limit+1) + items (limit).
	const bound = 1 + limit + (limit + 1) + limit
	for _, since := range []int64{0, w.version / 2, w.version - 4} {
		counter.take()
		p, err := q.ChangesSince(context.Background(), w.id, since, limit)
		if err != nil {
			t.Fatal(err)
		}
		rows := counter.take()
		if len(p.Items) == 0 || len(p.Items) > limit || p.ToVersion <= since {
			t.Fatalf("since %d: page of %d items to v%d: %+v", since, len(p.Items), p.ToVersion, p)
		}
		if rows > bound {
			t.Errorf("since %d (workspace v%d): the server returned %d rows for a page of %d items, want at most %d",
				since, w.version, rows, len(p.Items), bound)
		}
	}
	// Server side too, no plan node handles more than about a chunk of rows (a plan
	// that reads the workspace's history and sorts it would).
	chunk := pageRangeChunk(limit)
	// With statistics (autovacuum takes them soon after a bulk load; rebuild takes them
	// at once) the planner walks the index. Without, on a table this small, it may read
	// and sort the workspace's rows, which is cheap here but not at scale: take them now
	// so the check is about the query, not about autovacuum's timing.
	if _, err := e.pool.Exec(context.Background(), `ANALYZE proj_workspaces.item_history`); err != nil {
		t.Fatal(err)
	}
	var plan []byte
	if err := e.pool.QueryRow(context.Background(), `EXPLAIN (ANALYZE, FORMAT JSON) `+pageRangeSQL,
		w.id, int64(0), int64(math.MaxInt64), int64(math.MaxInt64), w.version, chunk, int64(movedOutBytes-itemFixedBytes)).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if n := maxActualRows(t, plan); n > float64(2*chunk) {
		t.Errorf("a plan node of the page-range query handled %.0f rows, want at most %d:\n%s", n, 2*chunk, plan)
	}
	// A page after the last version that stores items still reaches the workspace version.
	p, err := q.ChangesSince(context.Background(), w.id, w.version-1, limit)
	if err != nil || p.HasMore || p.ToVersion != w.version {
		t.Fatalf("last page: %+v, %v", p, err)
	}
}

// maxActualRows returns the most rows any node of an EXPLAIN (ANALYZE, FORMAT JSON)
// plan handled.
func maxActualRows(t *testing.T, plan []byte) float64 {
	t.Helper()
	var doc []struct{ Plan json.RawMessage }
	if err := json.Unmarshal(plan, &doc); err != nil || len(doc) != 1 {
		t.Fatalf("explain output %s: %v", plan, err)
	}
	type node struct {
		NodeType   string  `json:"Node Type"`
		ActualRows float64 `json:"Actual Rows"`
		Loops      float64 `json:"Actual Loops"`
		Plans      []node
	}
	var root node
	if err := json.Unmarshal(doc[0].Plan, &root); err != nil {
		t.Fatalf("explain plan %s: %v", doc[0].Plan, err)
	}
	var walk func(n node) float64
	walk = func(n node) float64 {
		m := n.ActualRows * max(n.Loops, 1)
		for _, c := range n.Plans {
			m = max(m, walk(c))
		}
		return m
	}
	return walk(root)
}

// BenchmarkChangesSinceBacklog measures the first page of getChangesSince (limit 1000)
// behind backlogs of 2,000 and 200,000 item changes (commits of 10 items): the two
// should take about the same time. Opt-in:
//
//	SYNC_BENCH_BACKLOG=1 go test -run '^$' -bench ChangesSinceBacklog ./projections/
func BenchmarkChangesSinceBacklog(b *testing.B) {
	if envInt(b, "SYNC_BENCH_BACKLOG", 0) == 0 {
		b.Skip("set SYNC_BENCH_BACKLOG=1 to run")
	}
	for _, changes := range []int{2000, 200000} {
		b.Run(fmt.Sprintf("%d-changes", changes), func(b *testing.B) {
			store, pool := benchEnv(b)
			w := backlogWorkspace(b, store, pool, changes, 10)
			q := NewQueries(pool)
			ctx := context.Background()
			for b.Loop() {
				p, err := q.ChangesSince(ctx, w.id, 0, 1000)
				if err != nil || len(p.Items) != 1000 || !p.HasMore {
					b.Fatalf("first page: %d items, more %v, %v", len(p.Items), p.HasMore, err)
				}
			}
		})
	}
}

// TestResultTooLargeStopsEarly checks that a getChanges refused as too large stops
// reading within a chunk of the limit instead of reading (or draining) the workspace.
func TestResultTooLargeStopsEarly(t *testing.T) {
	e := newEnv(t)
	const changes = 3 * readChunk
	w := backlogWorkspace(t, e.store, e.pool, changes, 50)
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	counter := &rowCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	q := NewQueries(pool)
	all, _, err := q.Changes(context.Background(), w.id)
	if err != nil || len(all) != changes {
		t.Fatalf("getChanges: %d items, %v", len(all), err)
	}
	counter.take()
	q.MaxResultBytes = 100 * itemFixedBytes // passed within the first chunk
	if _, _, err := q.Changes(context.Background(), w.id); !errors.Is(err, protocol.ErrResultTooLarge) {
		t.Fatalf("getChanges over the limit: %v", err)
	}
	if rows := counter.take(); rows > 1+readChunk {
		t.Errorf("a refused getChanges read %d rows of %d, want at most %d", rows, changes, 1+readChunk)
	}
	q.streamChunk = readChunk // the streamed getChanges, in chunks this workspace has several of
	if _, _, _, err := q.EncodedChanges(context.Background(), w.id, func(dst []byte, _ *domain.ItemMetadata) []byte { return dst }); !errors.Is(err, protocol.ErrResultTooLarge) {
		t.Fatalf("streamed getChanges over the limit: %v", err)
	}
	if rows := counter.take(); rows > 1+readChunk {
		t.Errorf("a refused streamed getChanges read %d rows of %d, want at most %d", rows, changes, 1+readChunk)
	}
}
