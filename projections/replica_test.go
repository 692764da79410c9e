package projections

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
)

// Without a standby (the cluster tests have one): a "standby" that is not in recovery
// is the primary itself or a promoted server, so Replica reads the primary (counted as
// primary); a standby that cannot be reached sends reads to the primary (fallback). The
// answers are the primary's either way.
func TestReplicaRoutesToThePrimaryWithoutAStandby(t *testing.T) {
	e := newEnv(t)
	f := newFixture(t)
	e.append(t, f.batches)
	e.projectAll(t)
	e.caughtUp(t, ModelWorkspaces)
	e.caughtUp(t, ModelAccounts)
	ctx := context.Background()
	want, _, err := e.q.Changes(ctx, f.w.id)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, r *Replica) {
		t.Helper()
		got, _, err := r.Changes(ctx, f.w.id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b domain.ItemMetadata) bool { return *a.ID == *b.ID && a.Version == b.Version }) {
			t.Fatalf("Changes through the replica differ from the primary's")
		}
		if _, err := r.ChangesSince(ctx, f.w.id, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ItemVersions(ctx, f.w.id, f.f1); err != nil {
			t.Fatal(err)
		}
		if ws, err := r.WorkspacesOf(ctx, f.owner); err != nil || len(ws) == 0 {
			t.Fatalf("WorkspacesOf: %v, %v", ws, err)
		}
	}

	t.Run("not in recovery", func(t *testing.T) {
		r, err := NewReplica(ReplicaConfig{Primary: e.pool, Standby: e.pool}, e.q)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		check(t, r)
		if st := r.Stats(); st.Served[ServedPrimary] != 4 || st.Served[ServedStandby]+st.Served[ServedFallback] != 0 {
			t.Fatalf("served %v, want 4 by the primary", st.Served)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		down, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		r, err := NewReplica(ReplicaConfig{Primary: e.pool, Standby: down, MaxWait: 5 * time.Second, Retry: time.Hour}, e.q)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		check(t, r)
		if st := r.Stats(); st.Served[ServedFallback] != 4 {
			t.Fatalf("served %v, want 4 fallbacks", st.Served)
		}
	})
}
