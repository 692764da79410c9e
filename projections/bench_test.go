package projections

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// The benchmarks are opt-in: they generate large histories.
//
//	SYNC_BENCH_EVENTS=1000000 go test -run '^$' -bench . -benchtime 1x -timeout 60m ./projections/
//
// BenchmarkRebuild appends SYNC_BENCH_EVENTS generated events (users, workspaces and
// commits of 1-3 items, many events per append) and measures the store's raw ReadAll
// rate and the rebuild rate of each model in events/s. BenchmarkQueries builds a
// workspace of SYNC_BENCH_ITEMS items (default 100,000) followed by 100 one-item commits
// and measures getChanges over the whole workspace (Changes, and EncodedChanges with an
// encoder that only appends 400 bytes per item: the query and the rendering loop without
// the JSON) and getChangesSince over the 100.
// BenchmarkVerify checks that Verify finds the live model of a generated history equal to
// its bulk rebuild, and measures it. Rebuild reports CPU seconds per million events
// besides events/s (see cpu_test.go); SYNC_BENCH_LOG=1 logs its phases.

func benchEnv(b *testing.B) (*postgres.Store, *pgxpool.Pool) {
	dsn := testenv.PostgresDSN(b)
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return store, pool
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// generate appends about n events: users, workspaces, then commits, perAppend events
// per append (one workspace's consecutive commits), rotating over the workspaces.
func generate(b *testing.B, s eventstore.Store, n, workspaces, perAppend int) int {
	g := newGen(b, 42)
	users := max(workspaces/4, 2)
	total := 0
	for _, bt := range g.history(users, workspaces, 0) {
		total += len(bt.recs)
		appendAll(b, s, []batch{bt})
	}
	start := time.Now()
	for i := 0; total < n; i++ {
		w := g.ws[i%len(g.ws)]
		recs := make([]eventstore.Record, 0, perAppend)
		for range min(perAppend, n-total) {
			recs = append(recs, g.randomCommit(w))
		}
		appendAll(b, s, []batch{{w.stream, recs}})
		total += len(recs)
		if i%100 == 0 {
			b.Logf("generated %d events (%.0f events/s)", total, float64(total)/time.Since(start).Seconds())
		}
	}
	return total
}

func BenchmarkRebuild(b *testing.B) {
	n := envInt(b, "SYNC_BENCH_EVENTS", 0)
	if n == 0 {
		b.Skip("set SYNC_BENCH_EVENTS (e.g. 1000000) to run")
	}
	store, pool := benchEnv(b)
	ctx := context.Background()
	start := time.Now()
	total := generate(b, store, n, 1000, 1000)
	b.Logf("generated %d events in %v", total, time.Since(start).Round(time.Second))

	b.Run("ReadAll", func(b *testing.B) {
		self0, server0 := cpuTimes(b, pool)
		for b.Loop() {
			var pos eventstore.Position
			read := 0
			for {
				evs, err := store.ReadAll(ctx, pos, 5000)
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) == 0 {
					break
				}
				read += len(evs)
				pos = evs[len(evs)-1].Position
			}
			if read != total {
				b.Fatalf("read %d events, appended %d", read, total)
			}
		}
		b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "events/s")
		reportCPU(b, pool, total*b.N, self0, server0)
	})
	for _, m := range Models() {
		b.Run("Rebuild/"+m.Name(), func(b *testing.B) {
			debug.FreeOSMemory() // the generation's heap out of the peak
			resetPeakRSS()
			if path := os.Getenv("SYNC_BENCH_CPUPROFILE"); path != "" {
				// The rebuild's own profile (-test.cpuprofile also holds the generation).
				stop := startCPUProfile(b, path+"."+m.Name())
				defer stop()
			}
			self0, server0 := cpuTimes(b, pool)
			for b.Loop() {
				cfg := RebuildConfig{Pool: pool, Source: store}
				if os.Getenv("SYNC_BENCH_LOG") != "" {
					cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
				}
				res, err := Rebuild(ctx, cfg, m.Name())
				if err != nil {
					b.Fatal(err)
				}
				if res.Events != int64(total) {
					b.Fatalf("rebuilt %d events, appended %d", res.Events, total)
				}
			}
			b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "events/s")
			reportCPU(b, pool, total*b.N, self0, server0)
			reportPeakRSS(b)
		})
	}
	var rows int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM proj_workspaces.item_history`).Scan(&rows); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d events, %d item versions", total, rows)
}

func BenchmarkQueries(b *testing.B) {
	if envInt(b, "SYNC_BENCH_EVENTS", 0) == 0 {
		b.Skip("set SYNC_BENCH_EVENTS (e.g. 1000000) to run")
	}
	items := envInt(b, "SYNC_BENCH_ITEMS", 100000)
	store, pool := benchEnv(b)
	ctx := context.Background()
	g := newGen(b, 43)
	appendAll(b, store, []batch{g.user()})
	w, bt := g.workspace(0, false)
	appendAll(b, store, []batch{bt})
	// Folders of 99 files each, 1000 items per commit, 10 commits per append.
	var recs []eventstore.Record
	var folder *domain.ItemID
	var files []domain.ItemID
	for made := 0; made < items; {
		var outs []domain.ItemOutcome
		for range min(1000, items-made) {
			if made%100 == 0 {
				md := g.newItem(w, nil, true, fmt.Sprintf("d%d", made))
				folder = md.ID
				outs = append(outs, w.store(md))
			} else {
				md := g.newItem(w, folder, false, fmt.Sprintf("f%d", made))
				files = append(files, *md.ID)
				outs = append(outs, w.store(md))
			}
			made++
		}
		recs = append(recs, g.committed(w, outs))
		if len(recs) == 10 {
			appendAll(b, store, []batch{{w.stream, recs}})
			recs = nil
		}
	}
	appendAll(b, store, []batch{{w.stream, recs}})
	since := w.version
	recs = nil
	for i := range 100 {
		recs = append(recs, g.committed(w, []domain.ItemOutcome{w.store(g.next(w, files[i*(len(files)/100)], domain.StatusChanged))}))
	}
	appendAll(b, store, []batch{{w.stream, recs}})
	if _, err := Rebuild(ctx, RebuildConfig{Pool: pool, Source: store}, ModelWorkspaces); err != nil {
		b.Fatal(err)
	}
	q := NewQueries(pool)

	b.Run(fmt.Sprintf("Changes/%d-items", items), func(b *testing.B) {
		for b.Loop() {
			got, v, err := q.Changes(ctx, w.id)
			if err != nil || len(got) != items || v != w.version {
				b.Fatalf("changes: %d items at v%d, %v", len(got), v, err)
			}
		}
	})
	b.Run(fmt.Sprintf("EncodedChanges/%d-items", items), func(b *testing.B) {
		enc := func(dst []byte, md *domain.ItemMetadata) []byte { // about the size of the JSON, without its cost
			return append(dst, make([]byte, 400)...)
		}
		for b.Loop() {
			got, v, _, err := q.EncodedChanges(ctx, w.id, enc)
			if err != nil || len(got) < 3 || v != w.version {
				b.Fatalf("encoded changes: %d pieces at v%d, %v", len(got), v, err)
			}
		}
	})
	b.Run("ChangesSince/100-changes", func(b *testing.B) {
		for b.Loop() {
			p, err := q.ChangesSince(ctx, w.id, since, 1000)
			if err != nil || len(p.Items) != 100 || p.HasMore {
				b.Fatalf("changes since: %d items, more %v, %v", len(p.Items), p.HasMore, err)
			}
		}
	})
}

// BenchmarkVerify lets the live projectors (the path that applies batch by batch with
// upserts) catch up with a generated history of SYNC_BENCH_EVENTS events, then measures
// Verify, which replays it in bulk mode (COPY, items filled at the end) into scratch
// tables and compares them row by row with the live ones: it fails on any difference, so
// it also checks at scale that a rebuild equals the live model.
func BenchmarkVerify(b *testing.B) {
	n := envInt(b, "SYNC_BENCH_EVENTS", 0)
	if n == 0 {
		b.Skip("set SYNC_BENCH_EVENTS (e.g. 200000) to run")
	}
	e := newEnv(b)
	total := generate(b, e.store, n, 1000, 1000)
	last := e.lastPosition(b)
	e.projectAll(b)
	start := time.Now()
	testenv.Eventually(b, 30*time.Minute, func() error {
		cp, err := Checkpoint(context.Background(), e.pool, ModelWorkspaces)
		if err != nil || cp.Less(last) {
			return fmt.Errorf("live projector at %s, want %s (%v)", cp, last, err)
		}
		return nil
	})
	b.Logf("the live projector applied %d events in %v", total, time.Since(start).Round(time.Second))
	b.ResetTimer()
	for b.Loop() {
		res, err := Verify(context.Background(), RebuildConfig{Pool: e.pool, Source: e.store}, ModelWorkspaces, 5)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range res.Diffs {
			b.Errorf("diff %s %s:\n live:    %s\n rebuilt: %s", d.Table, d.Key, d.Live, d.Rebuilt)
		}
		if res.Count != 0 || res.Events != int64(total) {
			b.Fatalf("verify: %d differences over %d events (appended %d)", res.Count, res.Events, total)
		}
	}
	b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "events/s")
}
