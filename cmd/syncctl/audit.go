package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/stacksync-es/syncservice/audit"
	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// auditFlags holds the flags of the audit subcommands.
var auditFlags struct {
	workspace, item, user, device string
	since, until, at              string
	fromVersion, toVersion        int64
	version                       int64
	logFormat, atFormat, vFormat  string
	follow                        bool
	followInterval                time.Duration
	pageSize                      int
	all                           bool
	streams                       []string
}

var auditCmd = &cobra.Command{
	Use:   "audit",
	Short: "Replay the history from the event store: who changed what, from which device, when; and prove it untouched",
	Long: `audit reads the event store directly, never the read models, so its answers hold even when a
projection is wrong. Times are RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02, midnight UTC).`,
}

var auditLogCmd = &cobra.Command{
	Use:   "log --workspace W",
	Short: "The history of a workspace: every item outcome of every commit (rejected ones with their reason) and lifecycle events",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		q := audit.LogQuery{FromVersion: auditFlags.fromVersion, ToVersion: auditFlags.toVersion, Follow: auditFlags.follow}
		var err error
		if q.Workspace, err = parseUUID("workspace", auditFlags.workspace, true); err != nil {
			return err
		}
		if q.Item, err = parseItem(auditFlags.item, false); err != nil {
			return err
		}
		if q.User, err = optUUID("user", auditFlags.user); err != nil {
			return err
		}
		if q.Device, err = optUUID("device", auditFlags.device); err != nil {
			return err
		}
		if q.Since, err = parseTime("since", auditFlags.since); err != nil {
			return err
		}
		if q.Until, err = parseTime("until", auditFlags.until); err != nil {
			return err
		}
		return withAuditor(cmd, !auditFlags.follow && !isTerminal(os.Stdout), func(ctx context.Context, a *audit.Auditor) error {
			sink, err := entryWriter(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return a.Log(ctx, q, sink)
		})
	},
}

var auditItemCmd = &cobra.Command{
	Use:   "item --workspace W --item ID",
	Short: "One item's whole life: every version (creation, renames, moves, deletes, revivals) with user and device, and rejected attempts, across shares into other workspaces",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		ws, err := parseUUID("workspace", auditFlags.workspace, true)
		if err != nil {
			return err
		}
		item, err := parseItem(auditFlags.item, true)
		if err != nil {
			return err
		}
		return withAuditor(cmd, !isTerminal(os.Stdout), func(ctx context.Context, a *audit.Auditor) error {
			sink, err := entryWriter(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return a.ItemLife(ctx, ws, *item, sink)
		})
	},
}

var auditAtCmd = &cobra.Command{
	Use:   "at --workspace W (--time T | --version V)",
	Short: "The workspace's full state at a past time or workspace version, rebuilt from history alone (the shape of getChanges)",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		q := audit.AtQuery{}
		var err error
		if q.Workspace, err = parseUUID("workspace", auditFlags.workspace, true); err != nil {
			return err
		}
		if q.Time, err = parseTime("time", auditFlags.at); err != nil {
			return err
		}
		if cmd.Flags().Changed("version") {
			v := auditFlags.version
			q.Version = &v
		}
		if q.Time.IsZero() == (q.Version == nil) {
			return errors.New("audit at: give --time or --version (one of them)")
		}
		f, err := audit.ParseFormat(auditFlags.atFormat)
		if err != nil {
			return err
		}
		var st audit.State
		err = withAuditor(cmd, true, func(ctx context.Context, a *audit.Auditor) error {
			st, err = a.At(ctx, q)
			return err
		})
		if err != nil {
			return err
		}
		logger().Debug("state rebuilt", "workspace", st.Workspace, "workspaceVersion", st.WorkspaceVersion,
			"streamVersion", st.StreamVersion, "lastEventAt", st.Time, "items", len(st.Items))
		return writeState(cmd.OutOrStdout(), f, st.Items)
	},
}

var auditVerifyCmd = &cobra.Command{
	Use:   "verify [--workspace W | --stream S ... | --all]",
	Short: "Walk each stream's hash chain and report the first altered, deleted, inserted or reordered event; exit 1 on any break",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		streams := append([]string(nil), auditFlags.streams...)
		if auditFlags.workspace != "" {
			ws, err := parseUUID("workspace", auditFlags.workspace, true)
			if err != nil {
				return err
			}
			streams = append(streams, domain.WorkspaceStream(ws))
		}
		if auditFlags.all == (len(streams) > 0) {
			return errors.New("audit verify: give --workspace or --stream, or --all")
		}
		f, err := audit.ParseFormat(auditFlags.vFormat)
		if err != nil {
			return err
		}
		if f == audit.FormatJSON {
			return errors.New("audit verify: --format table or jsonl")
		}
		var report audit.Report
		err = withAuditor(cmd, true, func(ctx context.Context, a *audit.Auditor) error {
			var err error
			if auditFlags.all {
				report, err = a.VerifyAll(ctx)
			} else {
				report, err = a.Verify(ctx, streams...)
			}
			return err
		})
		if err != nil {
			return err
		}
		if err := report.Write(cmd.OutOrStdout(), f); err != nil {
			return err
		}
		if broken := report.Broken(); len(broken) > 0 {
			return &exitError{code: 1, msg: fmt.Sprintf("audit verify: %d of %d streams broken", len(broken), len(report.Streams))}
		}
		return nil
	},
}

func init() {
	for _, c := range []*cobra.Command{auditLogCmd, auditItemCmd, auditAtCmd, auditVerifyCmd} {
		c.Flags().StringVar(&auditFlags.workspace, "workspace", "", "workspace id")
		c.Flags().IntVar(&auditFlags.pageSize, "page-size", audit.DefaultPageSize, "events per read of the store")
		auditCmd.AddCommand(c)
	}
	for _, c := range []*cobra.Command{auditLogCmd, auditItemCmd} {
		c.Flags().StringVar(&auditFlags.item, "item", "", "item id")
		c.Flags().StringVar(&auditFlags.logFormat, "format", string(audit.FormatTable), "output: table (for people) or jsonl (for tools)")
	}
	lf := auditLogCmd.Flags()
	lf.StringVar(&auditFlags.user, "user", "", "only commits by this user, and lifecycle events of this member")
	lf.StringVar(&auditFlags.device, "device", "", "only commits from this device")
	lf.StringVar(&auditFlags.since, "since", "", "only events at or after this time")
	lf.StringVar(&auditFlags.until, "until", "", "only events before this time")
	lf.Int64Var(&auditFlags.fromVersion, "from-version", 0, "only from this workspace version (inclusive)")
	lf.Int64Var(&auditFlags.toVersion, "to-version", 0, "only up to this workspace version (inclusive)")
	lf.BoolVarP(&auditFlags.follow, "follow", "f", false, "keep printing new events as they land")
	lf.DurationVar(&auditFlags.followInterval, "follow-interval", audit.DefaultFollowInterval, "how often --follow polls the stream's tail")
	af := auditAtCmd.Flags()
	af.StringVar(&auditFlags.at, "time", "", "the moment (RFC 3339 or a date)")
	af.Int64Var(&auditFlags.version, "version", 0, "the workspace version (0: before any commit)")
	af.StringVar(&auditFlags.atFormat, "format", string(audit.FormatJSON), "output: json (getChanges' array of ItemMetadata), jsonl or table")
	vf := auditVerifyCmd.Flags()
	vf.BoolVar(&auditFlags.all, "all", false, "verify every stream of the store (found through the global order)")
	vf.StringArrayVar(&auditFlags.streams, "stream", nil, "a stream to verify by name, e.g. user-<id> (repeatable)")
	vf.StringVar(&auditFlags.vFormat, "format", string(audit.FormatTable), "output: table or jsonl (one report per stream)")
	rootCmd.AddCommand(auditCmd)
}

// withAuditor opens the store named by --pg and runs fn with an Auditor on it. With
// progress, long replays draw a progress bar on stderr when it is a terminal; it is
// cleared when withAuditor returns, so print results after it.
func withAuditor(cmd *cobra.Command, progress bool, fn func(ctx context.Context, a *audit.Auditor) error) error {
	ctx := cmd.Context()
	log := logger()
	store, err := openStore(ctx, false, 2)
	if err != nil {
		return err
	}
	defer store.Close()
	cfg := audit.Config{PageSize: auditFlags.pageSize, FollowInterval: auditFlags.followInterval, Logger: log}
	var bars *progressBars
	if progress && isTerminal(os.Stderr) {
		bars = &progressBars{}
		cfg.Progress = bars.update
		defer bars.finish()
	}
	a, err := audit.New(store, cfg)
	if err != nil {
		return err
	}
	return fn(ctx, a)
}

// writeState prints a rebuilt state: as a table, or in JSON exactly as getChanges
// returns it on the wire (an array of ItemMetadata, or one per line with jsonl).
func writeState(w io.Writer, f audit.Format, items []domain.ItemMetadata) error {
	if f == audit.FormatTable {
		return audit.WriteItems(w, f, items)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if f == audit.FormatJSON {
		enc.SetIndent("", "  ")
		if err := enc.Encode(wire.FromItems(items)); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
		return bw.Flush()
	}
	for _, m := range items {
		if err := enc.Encode(wire.FromItem(m)); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	return bw.Flush()
}

func entryWriter(w io.Writer) (audit.EntrySink, error) {
	f, err := audit.ParseFormat(auditFlags.logFormat)
	if err != nil {
		return nil, err
	}
	return audit.NewEntryWriter(w, f)
}

// progressBars draws one bar per stream replayed; streams shorter than minBarEvents
// draw none.
type progressBars struct {
	stream string
	bar    *progressbar.ProgressBar
}

const minBarEvents = 20000

func (p *progressBars) update(stream string, done, total uint64) {
	if stream != p.stream {
		p.finish()
		p.stream = stream
		if total != 0 && total < minBarEvents {
			return
		}
		max := int64(total)
		if total == 0 {
			max = -1 // unknown: a spinner with a count
		}
		p.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(stream),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish())
	}
	if p.bar != nil {
		_ = p.bar.Set64(int64(done))
	}
}

func (p *progressBars) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func parseUUID(name, s string, required bool) (uuid.UUID, error) {
	if s == "" {
		if required {
			return uuid.Nil, fmt.Errorf("--%s is required", name)
		}
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("--%s %q: %w", name, s, err)
	}
	return id, nil
}

func optUUID(name, s string) (*uuid.UUID, error) {
	if s == "" {
		return nil, nil
	}
	id, err := parseUUID(name, s, true)
	return &id, err
}

func parseItem(s string, required bool) (*domain.ItemID, error) {
	if s == "" {
		if required {
			return nil, errors.New("--item is required")
		}
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || domain.ItemID(n) > domain.MaxItemID {
		return nil, fmt.Errorf("--item %q: not an item id (1 to 2^53-1)", s)
	}
	id := domain.ItemID(n)
	return &id, nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", name, s)
}
