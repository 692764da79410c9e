package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Diff is one row that differs between the live model and its rebuild. Live or Rebuilt
// is empty when the row is missing on that side.
type Diff struct {
	Table   string
	Key     string // the primary key, as a JSON array
	Live    string // the row as JSON
	Rebuilt string
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Model    string
	Position eventstore.Position // the checkpoint both sides were compared at
	Events   int64
	Diffs    []Diff // the first ones found (at most the maxDiffs asked for)
	Count    int    // differing rows in all
}

// Verify rebuilds the model into scratch tables (schema proj_<model>_verify) up to
// exactly the live model's checkpoint and compares them row by row with the live
// tables, from one snapshot in which both are at that checkpoint. The live projector
// keeps running; if it keeps moving the checkpoint, later attempts hold a SHARE lock on
// the live checkpoint while comparing, which pauses it for that long. The scratch tables
// are dropped at the end. With cfg.InlineAfter the rebuild gets, in the comparison's
// snapshot, the inline events the live tables hold beyond their checkpoint: those of
// transactions from the checkpoint's inline_from on (the projector applies older ones
// again itself after a swap that recorded one).
func Verify(ctx context.Context, cfg RebuildConfig, model string, maxDiffs int) (VerifyResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return VerifyResult{}, err
	}
	m, err := ModelNamed(model)
	if err != nil {
		return VerifyResult{}, err
	}
	start := time.Now()
	release, err := exclusive(ctx, cfg.Pool, m)
	if err != nil {
		return VerifyResult{}, err
	}
	defer release()
	live, scratch := m.Schema(), m.Schema()+"_verify"
	if err := migrateSchema(ctx, cfg.Pool, m, live); err != nil {
		return VerifyResult{}, err
	}
	if err := dropSchema(ctx, cfg.Pool, scratch); err != nil {
		return VerifyResult{}, err
	}
	defer func() {
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := dropSchema(cleanup, cfg.Pool, scratch); err != nil {
			cfg.Logger.Warn("dropping the verify tables", "err", err)
		}
	}()
	if err := migrateSchema(ctx, cfg.Pool, m, scratch); err != nil {
		return VerifyResult{}, err
	}
	if _, err := dropBulkIndexes(ctx, cfg.Pool, m, scratch); err != nil {
		return VerifyResult{}, err
	}
	var latest *latestItems // kept over the attempts: each replay goes on from the last
	if m.keepsLatest {
		latest = newLatestItems(cfg.LatestItemsBytes)
	}
	for attempt := 1; ; attempt++ {
		liveCP, err := readCheckpoint(ctx, cfg.Pool, live, false)
		if err != nil {
			return VerifyResult{}, err
		}
		cp, err := replay(ctx, cfg, m, scratch, &liveCP.Position, true, liveCP.Events, start, latest)
		if err != nil {
			return VerifyResult{}, err
		}
		if err := finishBulk(ctx, cfg.Pool, m, scratch, latest); err != nil {
			return VerifyResult{}, err
		}
		res, same, err := compareAt(ctx, cfg, m, live, scratch, cp.Position, attempt > 3, maxDiffs)
		if err != nil {
			return VerifyResult{}, err
		}
		if same {
			res.Model, res.Events = m.name, cp.Events
			return res, nil
		}
		if attempt >= 10 {
			return VerifyResult{}, fmt.Errorf("verify %s: the live checkpoint kept moving", m.name)
		}
	}
}

// compareAt compares live and scratch in one snapshot if the live checkpoint is at
// pos in it; same is false when it moved on.
func compareAt(ctx context.Context, cfg RebuildConfig, m *Model, live, scratch string, pos eventstore.Position,
	hold bool, maxDiffs int) (res VerifyResult, same bool, err error) {
	tx, err := cfg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return VerifyResult{}, false, fmt.Errorf("verify %s: begin: %w", m.name, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	if hold {
		// Taken before the snapshot: the live projector cannot commit until we are done.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{live, "checkpoint"}.Sanitize()+` IN SHARE MODE`); err != nil {
			return VerifyResult{}, false, fmt.Errorf("verify %s: %w", m.name, err)
		}
	}
	liveCP, err := readCheckpoint(ctx, tx, live, false)
	if err != nil {
		return VerifyResult{}, false, err
	}
	if liveCP.Position != pos {
		return VerifyResult{}, false, nil
	}
	if cfg.InlineAfter != nil {
		// What the live tables hold beyond their checkpoint, applied to the scratch ones
		// as the bulk replay before it wrote (no unique indexes), then completed again.
		// The writes go no further than tx, which is rolled back.
		applied, err := applyInline(ctx, tx, cfg, m, scratch, pos, liveCP.InlineFrom, true)
		if err == nil && applied && m.finishBulk != nil {
			err = fillItemsTx(ctx, tx, scratch)
		}
		if err != nil {
			return VerifyResult{}, false, fmt.Errorf("verify %s: %w", m.name, err)
		}
	}
	res.Position = pos
	for _, t := range m.tables {
		keys := make([]string, len(t.key))
		for i, k := range t.key {
			keys[i] = "t." + pgx.Identifier{k}.Sanitize()
		}
		// The checkpoint's inline_from is where the live projector's duties began after
		// a swap, not something the history determines.
		side := func(schema string) string {
			return `SELECT jsonb_build_array(` + strings.Join(keys, ", ") + `) AS k, to_jsonb(t) - 'inline_from' AS r FROM ` +
				pgx.Identifier{schema, t.name}.Sanitize() + ` t`
		}
		rows, err := tx.Query(ctx, `SELECT coalesce(l.k, s.k)::text, coalesce(l.r::text, ''), coalesce(s.r::text, '')
			FROM (`+side(live)+`) l FULL JOIN (`+side(scratch)+`) s ON l.k = s.k
			WHERE l.r IS DISTINCT FROM s.r ORDER BY 1`)
		if err != nil {
			return VerifyResult{}, false, fmt.Errorf("verify %s: compare %s: %w", m.name, t.name, err)
		}
		for rows.Next() {
			d := Diff{Table: t.name}
			if err := rows.Scan(&d.Key, &d.Live, &d.Rebuilt); err != nil {
				rows.Close()
				return VerifyResult{}, false, fmt.Errorf("verify %s: compare %s: %w", m.name, t.name, err)
			}
			res.Count++
			if len(res.Diffs) < maxDiffs {
				res.Diffs = append(res.Diffs, d)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return VerifyResult{}, false, fmt.Errorf("verify %s: compare %s: %w", m.name, t.name, err)
		}
	}
	return res, true, nil
}
