// Command syncctl administers a sync service: users, devices, workspaces, the audit of
// the history, the read-model projections, and benchmarks. Each subcommand group lives
// in its own file and registers itself on the root command in an init function.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Default DSN of the service's database; SYNC_PG_DSN (shared with syncd) overrides it.
const defaultPGDSN = "postgres://postgres@127.0.0.1:5432/syncservice?sslmode=disable"

// globals holds the flags every subcommand shares.
var globals struct {
	pgDSN   string
	verbose bool
}

var rootCmd = &cobra.Command{
	Use:           "syncctl",
	Short:         "Administer the sync service: users, devices, workspaces, audit, projections, bench",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	def := os.Getenv("SYNC_PG_DSN")
	if def == "" {
		def = defaultPGDSN
	}
	rootCmd.PersistentFlags().StringVar(&globals.pgDSN, "pg", def, "PostgreSQL DSN of the service's database (env SYNC_PG_DSN)")
	rootCmd.PersistentFlags().BoolVarP(&globals.verbose, "verbose", "v", false, "log debug detail to stderr")
}

// logger returns the logger subcommands use: warnings by default, debug with -v.
func logger() *slog.Logger {
	level := slog.LevelWarn
	if globals.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// exitError carries a process exit code for failures that are findings, not faults
// (verify found differences: exit 1 without a stack of errors).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		if ee, ok := err.(*exitError); ok {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "syncctl:", err)
		os.Exit(2)
	}
}
