package service_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/projections/memmodel"
	"github.com/stacksync-es/syncservice/service"
)

// countingReads counts the read model's OwnerUsageExcept calls.
type countingReads struct {
	service.ReadModel
	usage atomic.Int64
}

func (c *countingReads) OwnerUsageExcept(ctx context.Context, owner, except uuid.UUID) (int64, error) {
	c.usage.Add(1)
	return c.ReadModel.OwnerUsageExcept(ctx, owner, except)
}

// What an owner uses in other workspaces is read once for a run of commits to one
// workspace (within UserStaleness), and again as soon as this process committed to
// another workspace of the owner: the quota check and usedQuota see that commit at once.
func TestOwnerUsageReadOncePerRunOfCommits(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	reads := &countingReads{ReadModel: memmodel.New(st)}
	cfg := service.DefaultConfig()
	cfg.UserStaleness = time.Hour // the test decides when answers go stale
	s, err := service.New(cfg, st, reads, &ctxIDs{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user, home, err := s.CreateUser(ctx, service.NewUser{Name: "u", Email: "u@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: user, Name: "pc", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateWorkspace(ctx, user, "second", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota(ctx, user, 100); err != nil {
		t.Fatal(err)
	}
	temp := int64(0)
	commit := func(ws uuid.UUID, size int64) domain.Committed {
		t.Helper()
		temp-- // a tempId names one creation of the device
		res, err := s.Commit(ctx, protocol.CommitRequest{RequestID: uuid.NewString(), UserID: user,
			WorkspaceID: ws, DeviceID: dev.ID, Items: []domain.ItemMetadata{file(temp, uuid.NewString(), nil, size)}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Event
	}
	before := reads.usage.Load()
	for i := range 5 {
		if ev := commit(home, 10); !ev.Items[0].Succeeded {
			t.Fatalf("commit %d at home: %+v", i, ev.Items[0])
		}
	}
	if n := reads.usage.Load() - before; n != 1 {
		t.Fatalf("5 commits to one workspace read the owner's usage %d times, want 1", n)
	}
	// 50 bytes at home; 40 in the second workspace is within the limit, and counted at
	// once by the next commit at home: 20 more there would exceed 100.
	if ev := commit(other, 40); !ev.Items[0].Succeeded || ev.UsedQuota != 90 {
		t.Fatalf("second workspace: %+v, usedQuota %d", ev.Items[0], ev.UsedQuota)
	}
	if ev := commit(home, 20); ev.Items[0].Reason != domain.ReasonQuotaExceeded {
		t.Fatalf("home after 40 bytes elsewhere: %+v, want quotaExceeded", ev.Items[0])
	}
}
