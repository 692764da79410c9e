package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// insertBaseline measures one-row INSERTs into a scratch table of the --pg database,
// created and dropped here: workers connections insert at once, each row its own
// transaction with synchronous_commit on (one WAL flush per row, as each commit of the
// server costs at least one).
func (e *benchEnv) insertBaseline(ctx context.Context, workers int, stop stopRule) (phaseResult, error) {
	cfg, err := pgxpool.ParseConfig(globals.pgDSN)
	if err != nil {
		return phaseResult{}, fmt.Errorf("insert baseline: parse --pg: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = int32(workers+1), int32(workers)
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return phaseResult{}, fmt.Errorf("insert baseline: connect: %w", err)
	}
	defer pool.Close()
	table := pgx.Identifier{"bench_insert_" + e.run}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+
		" (id bigserial PRIMARY KEY, worker int NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)"); err != nil {
		return phaseResult{}, fmt.Errorf("insert baseline: create %s: %w", table, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(dctx, "DROP TABLE IF EXISTS "+table); err != nil {
			logger().Warn("bench: drop the insert baseline's table", "table", table, "err", err)
		}
	}()
	payload := strings.Repeat("x", 512) // about the size of a one-file commit event
	insert := "INSERT INTO " + table + " (worker, seq, payload) VALUES ($1, $2, $3)"
	op := func(ctx context.Context, w int, seq int64) error {
		_, err := pool.Exec(ctx, insert, w, seq, payload)
		return err
	}
	// Untimed: one row per connection, so that every connection is open and warm.
	if r := drive(ctx, workers, stopRule{ops: int64(workers)}, op); r.firstErr != nil {
		return phaseResult{}, fmt.Errorf("insert baseline: %w", r.firstErr)
	}
	return summarize(drive(ctx, workers, stop, op)), nil
}
