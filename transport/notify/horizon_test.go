package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections"
)

// With the workspace projection's checkpoint as model horizon, nothing appended without
// the inline projection is notified while the projector is not running; once it runs,
// every commit is notified, each one only after the projection had applied it.
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
	cfg.ModelHorizon = func(ctx context.Context) (eventstore.Position, error) {
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

// Commits whose append wrote the read models itself (the inline projection) are notified
// with no projector running, also in a batch before a commit appended without it, which
// holds itself and everything after it (order per workspace) until the projector has
// applied it.
func TestInlineCommitsNeedNoProjector(t *testing.T) {
	e := newEnv(t)
	pool, err := pgxpool.New(ctxT(t), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := projections.Migrate(ctxT(t), pool); err != nil {
		t.Fatal(err)
	}
	inline, err := postgres.Open(ctxT(t), postgres.Config{DSN: e.dsn, MaxConns: 4, Inline: projections.Inline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inline.Close() })
	ws := uuid.New()
	l := listen(t, e.amqp, ws)
	appendEvent(t, inline, domain.WorkspaceStream(ws), domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: uuid.New(),
		At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	for v := int64(1); v <= 5; v++ {
		commit(t, inline, ws, v)
	}
	cfg := fastConfig(t, e)
	cfg.ModelHorizon = func(ctx context.Context) (eventstore.Position, error) {
		return projections.Checkpoint(ctx, pool, projections.ModelWorkspaces)
	}
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)
	waitVersions(t, l, 5, 30*time.Second)

	commit(t, inline, ws, 6)
	commit(t, e.store, ws, 7) // no inline projection
	commit(t, inline, ws, 8)
	waitVersions(t, l, 6, 30*time.Second)
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); !st.HeldByHorizon {
			return fmt.Errorf("status %+v, want the notifier held by the model horizon", st)
		}
		return nil
	})
	if firsts, _ := dedup(l.versions(t)); len(firsts) != 6 {
		t.Fatalf("notified %v while version 7 was not applied", l.versions(t))
	}
	p, err := projections.New(projections.Config{Model: projections.ModelWorkspaces, DSN: e.dsn, Pool: pool, Source: e.store,
		LeaderRetry: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p.Run)
	waitVersions(t, l, 8, 30*time.Second)
}
