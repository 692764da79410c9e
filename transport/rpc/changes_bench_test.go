package rpc_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/internal/changeset"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/rpc/rpctest"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// BenchmarkGetChanges measures getChanges of workspaces of 10,000 and 100,000 items
// (folders of 99 files with two chunks each) held in the PostgreSQL read model, opt-in:
//
//	SYNC_BENCH_CHANGES=1 go test -run '^$' -bench GetChanges -benchtime 20x ./transport/rpc/
//
// encode/*: the service and the reply's encoding, in process: old (Changes, the wire
// structs, one json.Marshal: the path before streaming), streamed (rows rendered
// into pieces, copied once into the reply) and patched (after a commit of one item,
// written into the read model as the projection writes it: the answer built from the
// last one and the item written since, copied once). amqp/*: a request through
// RabbitMQ to a running rpc.Server and its whole reply back, without the cache (every
// request reads and renders the rows), with it (the workspace is unchanged: the reply
// is sent from the cache), and patched (each request after a commit of one item: the
// cached reply is patched). patched/* count the commit's write (about a millisecond).
// Each reports B/op, the peak of the live heap during the run above its start
// (peak-heap-MB), and amqp/* the process's RSS after (rss-MB).
func BenchmarkGetChanges(b *testing.B) {
	if os.Getenv("SYNC_BENCH_CHANGES") == "" {
		b.Skip("set SYNC_BENCH_CHANGES=1 to run")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := projections.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	svc, err := service.New(service.DefaultConfig(), memstore.New(), projections.NewQueries(pool), &itemids.Memory{})
	if err != nil {
		b.Fatal(err)
	}
	user := uuid.New()
	sizes := []int{10000, 100000}
	wss := make([]uuid.UUID, len(sizes))
	for i, n := range sizes {
		wss[i] = seedWorkspace(b, pool, user, n)
	}
	for i, n := range sizes {
		ws := wss[i]
		b.Run(fmt.Sprintf("encode/old/%d-items", n), func(b *testing.B) {
			measure(b, func() int {
				items, err := svc.Changes(ctx, user, ws)
				if err != nil {
					b.Fatal(err)
				}
				body, err := wire.EncodeResponse("id", wire.FromItems(items), nil)
				if err != nil {
					b.Fatal(err)
				}
				return len(body)
			})
		})
		b.Run(fmt.Sprintf("encode/streamed/%d-items", n), func(b *testing.B) {
			measure(b, func() int {
				pieces, _, err := svc.EncodedChanges(ctx, user, ws, wire.AppendItem)
				if err != nil {
					b.Fatal(err)
				}
				return len(wire.EncodeRawResponse("id", pieces...))
			})
		})
		b.Run(fmt.Sprintf("encode/patched/%d-items", n), func(b *testing.B) {
			a, err := svc.EncodedAnswer(ctx, user, ws, nil, wire.AppendItem) // the first answer, read in full
			if err != nil {
				b.Fatal(err)
			}
			base := &changeset.Base{Text: bytes.Join(a.Pieces, nil), Items: a.Items, Version: a.Version}
			measure(b, func() int {
				commitOne(b, pool, ws)
				a, err := svc.EncodedAnswer(ctx, user, ws, base, wire.AppendItem)
				if err != nil || !a.Patched {
					b.Fatalf("patched %v: %v", a.Patched, err)
				}
				base = &changeset.Base{Text: bytes.Join(a.Pieces, nil), Items: a.Items, Version: a.Version}
				return len(base.Text)
			})
		})
	}
	url := testenv.AMQPURL(b)
	for _, name := range []string{"streamed", "cached", "patched"} {
		cfg := rpc.Config{URL: url, Name: "bench-" + name, RequestQueue: "bench-" + name, Auth: rpc.AuthTrust,
			ChangesCacheBytes: map[bool]int64{true: -1, false: 0}[name == "streamed"]}
		rpctest.StartServer(b, cfg, svc)
		cl := dialBench(b, url, user, cfg.RequestQueue)
		for i, n := range sizes {
			b.Run(fmt.Sprintf("amqp/%s/%d-items", name, n), func(b *testing.B) {
				measure(b, func() int {
					if name == "patched" {
						commitOne(b, pool, wss[i])
					}
					return cl.getChanges(b, wss[i])
				})
				b.ReportMetric(float64(rss(b))/(1<<20), "rss-MB")
			})
		}
	}
}

// commitOne writes a commit of one new file into the read model as the projection
// does (apply.go): the item and its version at the workspace's next version, and the
// workspace's row, in one transaction.
func commitOne(b *testing.B, pool *pgxpool.Pool, ws uuid.UUID) {
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	var v int64
	if err := tx.QueryRow(ctx, `UPDATE proj_workspaces.workspaces SET version = version + 1 WHERE workspace_id = $1 RETURNING version`, ws).Scan(&v); err != nil {
		b.Fatal(err)
	}
	for _, t := range []string{"items", "item_history"} {
		if _, err := tx.Exec(ctx, `INSERT INTO proj_workspaces.`+t+` (workspace_id, item_id, version, ws_version, device_id, parent_id,
			status, modified_at, checksum, chunks, size, is_folder, filename, mimetype)
			VALUES ($1, 50000000 + $2, 1, $2, $1, 1000, 'NEW', now(), 1, ARRAY['c'], 1, false, 'new ' || $2, 'text/plain')`, ws, v); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
}

// measure runs op b.N times, reporting allocations, the reply's bytes and the peak of
// the live heap above its level at the start.
func measure(b *testing.B, op func() int) {
	b.ReportAllocs()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var n int
	for b.Loop() {
		n = op()
	}
	close(stop)
	<-done
	b.ReportMetric(float64(n), "reply-bytes")
	b.ReportMetric(float64(peak.Load()-min(base, peak.Load()))/(1<<20), "peak-heap-MB")
}

// seedWorkspace writes a workspace of n items straight into the read model: folders
// at every hundredth item with 99 files under each, every file with two chunks.
func seedWorkspace(b *testing.B, pool *pgxpool.Pool, user uuid.UUID, n int) uuid.UUID {
	ctx := context.Background()
	ws := uuid.New()
	stmts := []string{
		`INSERT INTO proj_workspaces.workspaces (workspace_id, name, owner_id, is_shared, is_encrypted, created_at, version)
			VALUES ($1, 'bench', $2, false, false, now(), $3::bigint / 1000 + 1)`,
		`INSERT INTO proj_workspaces.members (workspace_id, user_id, name, stream_version) VALUES ($1, $2, 'bench', 0)`,
		`INSERT INTO proj_workspaces.items (workspace_id, item_id, version, ws_version, device_id, parent_id, parent_version,
			temp_id, status, modified_at, checksum, chunks, size, is_folder, filename, mimetype)
		SELECT $1, 1000 + g, 1, 1 + g / 1000, $2, CASE WHEN g % 100 = 0 THEN NULL ELSE 1000 + g - g % 100 END, NULL,
			NULL, 'NEW', now() - g * interval '1 second', g * 7919,
			CASE WHEN g % 100 = 0 THEN '{}'::text[] ELSE ARRAY[md5(g::text) || 'abcdefgh', md5((-g)::text) || 'abcdefgh'] END,
			g % 10000, g % 100 = 0,
			CASE WHEN g % 100 = 0 THEN 'folder ' || g ELSE 'file ' || g || '.txt' END,
			CASE WHEN g % 100 = 0 THEN 'inode/directory' ELSE 'text/plain' END
		FROM generate_series(0, $3::bigint - 1) g`,
		`ANALYZE proj_workspaces.items`,
	}
	for i, q := range stmts {
		var args []any
		switch i {
		case 0, 2:
			args = []any{ws, user, n}
		case 1:
			args = []any{ws, user}
		}
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			b.Fatalf("seed %d items: %v", n, err)
		}
	}
	return ws
}

// benchClient sends getChanges requests over AMQP and reads their replies.
type benchClient struct {
	ch      *amqp.Channel
	queue   string
	replyQ  string
	user    uuid.UUID
	replies <-chan amqp.Delivery
	seq     int
}

func dialBench(b *testing.B, url string, user uuid.UUID, queue string) *benchClient {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	q := "reply." + user.String() + "." + uuid.NewString()[:8]
	if _, err := ch.QueueDeclare(q, false, true, true, false, nil); err != nil {
		b.Fatal(err)
	}
	replies, err := ch.Consume(q, "", true, true, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &benchClient{ch: ch, queue: queue, replyQ: q, user: user, replies: replies}
}

// getChanges returns the size of the reply, after checking that it is a result.
func (c *benchClient) getChanges(b *testing.B, ws uuid.UUID) int {
	c.seq++
	corr := strconv.Itoa(c.seq)
	body := fmt.Appendf(nil, `{"method":"getChanges","params":[{"requestId":"g","userId":"%s","workspaceId":"%s"}],"id":"%s","async":false}`,
		c.user, ws, corr)
	if err := c.ch.PublishWithContext(context.Background(), topology.RPCExchange, c.queue, false, false,
		amqp.Publishing{ContentType: "application/json", CorrelationId: corr, ReplyTo: c.replyQ, Body: body}); err != nil {
		b.Fatal(err)
	}
	for d := range c.replies {
		if d.CorrelationId != corr {
			continue
		}
		if !strings.HasPrefix(string(d.Body[:min(len(d.Body), 11)]), `{"result":[`) {
			b.Fatalf("reply: %.300s", d.Body)
		}
		return len(d.Body)
	}
	b.Fatal("reply channel closed")
	return 0
}

// rss returns the process's resident set size in bytes.
func rss(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if kb, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(kb, "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}
