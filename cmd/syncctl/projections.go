package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/storeopen"
	"github.com/stacksync-es/syncservice/projections"
)

var projectionsFlags struct {
	batch      int
	itemsBytes int64
	maxDiffs   int
	scan       int
	asideShown int
}

var projectionsCmd = &cobra.Command{
	Use:   "projections",
	Short: "Rebuild, verify and inspect the read models (" + projections.ModelWorkspaces + ", " + projections.ModelAccounts + ")",
}

var projectionsRebuildCmd = &cobra.Command{
	Use:   "rebuild [model...]",
	Short: "Replay the whole history into fresh tables and swap them in atomically (all models by default)",
	Long: `Replays the history from position 0 into a fresh schema while the live model keeps
serving and its projector keeps running, then swaps the fresh tables in, with their
checkpoint, in one transaction that briefly locks the live tables. On failure or
interrupt the live tables are untouched.`,
	RunE: runProjectionsRebuild,
}

var projectionsVerifyCmd = &cobra.Command{
	Use:   "verify [model...]",
	Short: "Rebuild into scratch tables up to the live checkpoint and compare row by row; exit 1 on any difference",
	RunE:  runProjectionsVerify,
}

var projectionsStatusCmd = &cobra.Command{
	Use:   "status",
	Short: "Print each model's checkpoint, its lag in events and seconds, and the events it set aside",
	Args:  cobra.NoArgs,
	RunE:  runProjectionsStatus,
}

func init() {
	for _, c := range []*cobra.Command{projectionsRebuildCmd, projectionsVerifyCmd} {
		c.Flags().IntVar(&projectionsFlags.batch, "batch", 5000, "events read and applied per transaction")
		c.Flags().Int64Var(&projectionsFlags.itemsBytes, "items-memory", 0, "bytes the replay may use to keep each item's latest version, so that the items table is copied from memory rather than computed from the whole item history afterwards (0: 256 MiB; negative: none); past it, the finish computes them")
	}
	projectionsVerifyCmd.Flags().IntVar(&projectionsFlags.maxDiffs, "max-diffs", 50, "differences printed per model (all are counted)")
	projectionsStatusCmd.Flags().IntVar(&projectionsFlags.scan, "scan", 100000, "most events read to count a model's lag")
	projectionsStatusCmd.Flags().IntVar(&projectionsFlags.asideShown, "set-aside", 20, "set-aside events listed per model (all are counted)")
	projectionsCmd.AddCommand(projectionsRebuildCmd, projectionsVerifyCmd, projectionsStatusCmd)
	rootCmd.AddCommand(projectionsCmd)
}

// projectionsEnv opens the event store and a pool on the service's database.
func projectionsEnv(ctx context.Context) (eventstore.Store, *pgxpool.Pool, func(), error) {
	store, err := openStore(ctx, false, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := pgxpool.New(ctx, globals.pgDSN)
	if err != nil {
		store.Close()
		return nil, nil, nil, fmt.Errorf("connect %s: %w", globals.pgDSN, err)
	}
	return store, pool, func() { pool.Close(); store.Close() }, nil
}

// inlineAfter is how Rebuild and Verify read the inline events in the store of --store.
// On PostgreSQL syncd (and syncctl) write the read models inline: the live tables run
// ahead of their checkpoints by those appends, which a rebuild's swap carries into the
// fresh tables and Verify applies to its rebuild. EventStoreDB appends are never inline,
// and the read models' database holds no events to read.
func inlineAfter() func(context.Context, pgx.Tx, eventstore.Position, int) ([]eventstore.RecordedEvent, error) {
	if storeopen.IsESDB(storeGlobals.store) {
		return nil
	}
	return postgres.ReadInlineAfter
}

// modelsOf resolves the named models, all of them when none is named.
func modelsOf(args []string) ([]string, error) {
	if len(args) == 0 {
		var names []string
		for _, m := range projections.Models() {
			names = append(names, m.Name())
		}
		return names, nil
	}
	for _, a := range args {
		if _, err := projections.ModelNamed(a); err != nil {
			return nil, err
		}
	}
	return args, nil
}

// progress reports a replay: a progress bar with events/s and ETA on a terminal, a
// plain line every few seconds otherwise.
type progress struct {
	out   io.Writer
	bar   *progressbar.ProgressBar
	label string
	last  time.Time
}

func newProgress(label string) *progress {
	p := &progress{out: os.Stderr, label: label}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		p.bar = progressbar.NewOptions64(1,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionShowElapsedTimeOnFinish(),
		)
	}
	return p
}

func (p *progress) update(pr projections.Progress) {
	if p.bar != nil {
		if pr.Estimate != p.bar.GetMax64() {
			p.bar.ChangeMax64(pr.Estimate)
		}
		_ = p.bar.Set64(pr.Events)
		return
	}
	if time.Since(p.last) < 2*time.Second {
		return
	}
	p.last = time.Now()
	rate := float64(pr.Events) / max(pr.Elapsed.Seconds(), 1e-9)
	line := fmt.Sprintf("%s: %d events, %.0f events/s, at %s", p.label, pr.Events, rate, pr.Position)
	if pr.Estimate > pr.Events && rate > 0 {
		line += fmt.Sprintf(", about %d left, ETA %v", pr.Estimate-pr.Events,
			(time.Duration(float64(pr.Estimate-pr.Events)/rate) * time.Second).Round(time.Second))
	}
	fmt.Fprintln(p.out, line)
}

func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.out)
	}
}

func runProjectionsRebuild(cmd *cobra.Command, args []string) error {
	names, err := modelsOf(args)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	store, pool, closeAll, err := projectionsEnv(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	for _, name := range names {
		pr := newProgress("rebuild " + name)
		res, err := projections.Rebuild(ctx, projections.RebuildConfig{
			InlineAfter: inlineAfter(),
			Pool:        pool, Source: store, BatchSize: projectionsFlags.batch, Progress: pr.update, Logger: logger(),
			LatestItemsBytes: projectionsFlags.itemsBytes,
		}, name)
		pr.done()
		if err != nil {
			return fmt.Errorf("rebuild %s (live tables untouched): %w", name, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s: %d events up to %s in %v (%.0f events/s); swapped in\n",
			name, res.Events, res.Position, res.Elapsed.Round(time.Millisecond),
			float64(res.Events)/max(res.Elapsed.Seconds(), 1e-9))
		if res.SetAside > 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "  %d events could not be applied and were set aside: syncctl projections status lists them\n", res.SetAside)
		}
	}
	return nil
}

func runProjectionsVerify(cmd *cobra.Command, args []string) error {
	names, err := modelsOf(args)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	store, pool, closeAll, err := projectionsEnv(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	out := cmd.OutOrStdout()
	differing := 0
	for _, name := range names {
		pr := newProgress("verify " + name)
		res, err := projections.Verify(ctx, projections.RebuildConfig{
			InlineAfter: inlineAfter(),
			Pool:        pool, Source: store, BatchSize: projectionsFlags.batch, Progress: pr.update, Logger: logger(),
			LatestItemsBytes: projectionsFlags.itemsBytes,
		}, name, projectionsFlags.maxDiffs)
		pr.done()
		if err != nil {
			return fmt.Errorf("verify %s: %w", name, err)
		}
		if res.Count == 0 {
			fmt.Fprintf(out, "%s: identical to a rebuild at %s (%d events)\n", name, res.Position, res.Events)
			continue
		}
		differing++
		fmt.Fprintf(out, "%s: %d rows differ from a rebuild at %s (%d events)\n", name, res.Count, res.Position, res.Events)
		for _, d := range res.Diffs {
			fmt.Fprintf(out, "  %s %s\n    live:    %s\n    rebuilt: %s\n", d.Table, d.Key, orMissing(d.Live), orMissing(d.Rebuilt))
		}
		if res.Count > len(res.Diffs) {
			fmt.Fprintf(out, "  ... and %d more\n", res.Count-len(res.Diffs))
		}
	}
	if differing > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("verify: %d of %d models differ from their rebuild", differing, len(names))}
	}
	return nil
}

func orMissing(s string) string {
	if s == "" {
		return "(missing)"
	}
	return s
}

func runProjectionsStatus(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	store, pool, closeAll, err := projectionsEnv(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tCHECKPOINT\tEVENTS\tLAST EVENT\tLAG EVENTS\tLAG SECONDS\tSET ASIDE")
	var aside []string
	for _, m := range projections.Models() {
		st, err := projections.StatusOf(ctx, pool, store, m.Name(), projectionsFlags.scan)
		if err != nil {
			return err
		}
		lagEvents := fmt.Sprint(st.Lag.Events)
		if st.Lag.Capped {
			lagEvents = ">=" + lagEvents
		}
		last := "-"
		if !st.LastEventAt.IsZero() {
			last = st.LastEventAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%.1f\t%d\n", st.Model, st.Position, st.Events, last, lagEvents,
			st.Lag.Behind.Seconds(), st.SetAside)
		if st.SetAside > 0 {
			list, total, err := projections.SetAsideOf(ctx, pool, m.Name(), projectionsFlags.asideShown)
			if err != nil {
				return err
			}
			aside = append(aside, fmt.Sprintf("\n%s: %d events set aside (could not be applied; see docs/operations.md):", m.Name(), total))
			for _, a := range list {
				aside = append(aside, fmt.Sprintf("  %s  %s@%d  %s  at %s\n    %s", a.Position, a.Stream, a.StreamVersion, a.Type,
					a.At.UTC().Format(time.RFC3339), a.Error))
			}
			if total > int64(len(list)) {
				aside = append(aside, fmt.Sprintf("  ... and %d more", total-int64(len(list))))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, line := range aside {
		fmt.Fprintln(cmd.OutOrStdout(), line)
	}
	return nil
}
