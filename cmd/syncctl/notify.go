package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/stacksync-es/syncservice/transport/notify"
)

// The followers of transport/notify, by their checkpoint names in syncd.
var notifyFollowers = []string{"notifier", "binder"}

func notifyCmd() *cobra.Command {
	c := &cobra.Command{Use: "notify", Short: "Inspect the notifier and the binder (their checkpoints and set-aside events)"}
	var shown int
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the notifier's and the binder's checkpoints and the events they set aside",
		Long: `Prints the checkpoint of each follower of transport/notify and lists the events it set
aside: notifications the broker refused again and again (or larger than its maximum
message size), and events the binder could not apply. docs/operations.md says how to
resolve them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, err := pgxpool.New(ctx, globals.pgDSN)
			if err != nil {
				return fmt.Errorf("connect %s: %w", globals.pgDSN, err)
			}
			defer pool.Close()
			if err := notify.Migrate(ctx, pool); err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "FOLLOWER\tCHECKPOINT")
			for _, f := range notifyFollowers {
				pos, err := notify.LoadCheckpoint(ctx, pool, f)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\t%s\n", f, pos)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			aside, err := notify.ListSetAside(ctx, pool, "", shown)
			if err != nil {
				return err
			}
			fmt.Printf("\n%d set-aside events\n", len(aside))
			if len(aside) == 0 {
				return nil
			}
			w = tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "FOLLOWER\tPOSITION\tSTREAM\tVERSION\tTYPE\tATTEMPTS\tAT\tERROR")
			for _, a := range aside {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", a.Follower, a.Position, a.Stream, a.StreamVersion, a.Type,
					a.Attempts, a.At.UTC().Format("2006-01-02T15:04:05Z"), a.Error)
			}
			return w.Flush()
		},
	}
	status.Flags().IntVar(&shown, "limit", 100, "most set-aside events listed")
	c.AddCommand(status)
	return c
}

func init() { rootCmd.AddCommand(notifyCmd()) }
