package notify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
)

func TestMinHorizon(t *testing.T) {
	at := func(c, p uint64) func(context.Context) (eventstore.Position, error) {
		return func(context.Context) (eventstore.Position, error) {
			return eventstore.Position{Commit: c, Prepare: p}, nil
		}
	}
	got, err := MinHorizon(at(5, 9), at(4, 20), at(7, 1))(context.Background())
	if err != nil || got != (eventstore.Position{Commit: 4, Prepare: 20}) {
		t.Fatalf("MinHorizon = %v, %v; want 4/20", got, err)
	}
	boom := errors.New("boom")
	fail := func(context.Context) (eventstore.Position, error) { return eventstore.Position{}, boom }
	if _, err := MinHorizon(at(1, 1), fail)(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("MinHorizon error = %v, want boom", err)
	}
}

// With the workspace projection's checkpoint as horizon, nothing is notified while the
// projector is not running; once it runs, every commit is notified, each one only
// after the projection had applied it.
func TestHorizonIsTheWorkspaceProjection(t *testing.T) {
	e := newEnv(t)
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	appendEvent(t, e.store, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: uuid.New(),
		At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	var last eventstore.Record
	for v := int64(1); v <= 10; v++ {
		last, _ = commit(t, e.store, ws, v)
	}
	lastPos := positionOf(t, e.store, last.ID)

	pool, err := pgxpool.New(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := fastConfig(t, e)
	cfg.Horizon = func(ctx context.Context) (eventstore.Position, error) {
		return projections.Checkpoint(ctx, pool, projections.ModelWorkspaces)
	}
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); !st.Leader || !st.HeldByHorizon {
			return fmt.Errorf("status %+v, want the notifier held by the horizon", st)
		}
		return nil
	})
	if vs := l.versions(t); len(vs) != 0 {
		t.Fatalf("notified %v before the projection applied anything", vs)
	}

	p, err := projections.New(projections.Config{Model: projections.ModelWorkspaces, DSN: e.dsn, Pool: pool, Source: e.store,
		BatchSize: 3, LeaderRetry: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p.Run)
	waitVersions(t, l, 10, 30*time.Second)
	cp, err := projections.Checkpoint(ctxT(t), pool, projections.ModelWorkspaces)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Less(lastPos) {
		t.Fatalf("every commit notified but the projection is at %v, before the last commit %v", cp, lastPos)
	}
}
