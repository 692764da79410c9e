package service_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

// BenchmarkHotWorkspace: 8 committers (2 devices × 4) commit one new file each, as fast
// as they can, to one workspace over the PostgreSQL store (projectors running, as in a
// server). one-at-a-time decides and appends each commit alone (MaxCommitBatch 1, what
// the service did before it batched); batched is the default. Both run in the same
// process on the same database, each on its own workspace.
//
//	go test -run '^$' -bench HotWorkspace -benchtime 3000x ./service/
func BenchmarkHotWorkspace(b *testing.B) {
	e := newEnv(b)
	if err := itemids.Migrate(context.Background(), e.pool); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		batch int
	}{{"one-at-a-time", 1}, {"batched", 64}} {
		b.Run(bc.name, func(b *testing.B) {
			var appends atomic.Int64
			cfg := service.DefaultConfig()
			cfg.MaxCommitBatch = bc.batch
			cfg.OnAppend = func() { appends.Add(1) }
			s, err := service.New(cfg, e.store, e.q, itemids.NewPostgres(e.pool))
			if err != nil {
				b.Fatal(err)
			}
			benchHot(b, s, bc.name, &appends)
		})
	}
}

// benchHot runs the 8 committers and reports commits/s, commits per append and the
// commits' latency percentiles.
func benchHot(b *testing.B, s *service.Service, name string, appends *atomic.Int64) {
	ctx := context.Background()
	user, ws, err := s.CreateUser(ctx, service.NewUser{Name: name, Email: uuid.NewString() + "@example.com"})
	if err != nil {
		b.Fatal(err)
	}
	var devs [2]uuid.UUID
	for i := range devs {
		res, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: fmt.Sprint("reg-", i), UserID: user, Name: "d", OS: "linux"})
		if err != nil {
			b.Fatal(err)
		}
		devs[i] = res.ID
	}
	testenv.Eventually(b, 10*time.Second, func() error { _, err := s.Workspaces(ctx, user); return err })
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, 8)
	appends.Store(0)
	b.ResetTimer()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := devs[w%2]
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				it := file(-n, fmt.Sprint("f", n), nil, 1)
				start := time.Now()
				res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: fmt.Sprint("r", n), UserID: user, WorkspaceID: ws, DeviceID: dev,
					Items: []domain.ItemMetadata{it}})
				if err != nil || !res.Event.Items[0].Succeeded {
					b.Errorf("commit %d: %+v, %v", n, res.Event.Items, err)
					return
				}
				lat[w] = append(lat[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	b.ReportMetric(float64(b.N)/float64(max(appends.Load(), 1)), "commits/append")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
