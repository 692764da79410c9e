package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// A write transaction left open shows in the horizon metrics: at least one transaction
// id behind, and an oldest write transaction at least as old as it.
func TestHorizonMetricsShowAnOpenWriteTransaction(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewPedanticRegistry() // checks the metrics against their descriptions
	reg.MustRegister(horizonCollector(pool))

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)                                                 //nolint:errcheck // the test's end
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // takes an id
		t.Fatal(err)
	}
	// A snapshot's xmax is one past the latest transaction to end, so on an otherwise
	// idle cluster the open one would count as nothing held back (and nothing is): end a
	// later write transaction, which the open one now holds back.
	if _, err := pool.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	// The transaction's age grows while it is open: poll until the metric shows it.
	testenv.Eventually(t, 30*time.Second, func() error {
		got, err := gauges(reg)
		if err != nil {
			return err
		}
		if n := got["syncd_store_horizon_xids"]; n < 1 {
			return fmt.Errorf("syncd_store_horizon_xids = %v with a write transaction open, want ≥ 1", n)
		}
		if age := got["syncd_store_oldest_write_transaction_seconds"]; age < 0.2 {
			return fmt.Errorf("syncd_store_oldest_write_transaction_seconds = %v, want it to reach 0.2 s", age)
		}
		return nil
	})
}

// gauges gathers reg's unlabelled gauges by name.
func gauges(reg prometheus.Gatherer) (map[string]float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	return got, nil
}
