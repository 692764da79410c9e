package service_test

import (
	"context"
	"fmt"
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
			cfg := service.DefaultConfig()
			cfg.MaxCommitBatch = bc.batch
			s, err := service.New(cfg, e.store, e.q, itemids.NewPostgres(e.pool))
			if err != nil {
				b.Fatal(err)
			}
			benchHot(b, s, bc.name)
		})
	}
}

func benchHot(b *testing.B, s *service.Service, name string) {
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
				res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: fmt.Sprint("r", n), UserID: user, WorkspaceID: ws, DeviceID: dev,
					Items: []domain.ItemMetadata{it}})
				if err != nil || !res.Event.Items[0].Succeeded {
					b.Errorf("commit %d: %+v, %v", n, res.Event.Items, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
