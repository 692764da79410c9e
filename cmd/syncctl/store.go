package main

import (
	"context"
	"os"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/storeopen"
	"github.com/stacksync-es/syncservice/projections"
)

// storeGlobals are --store and --store-prefix: the event store syncd runs on (its -store),
// PostgreSQL in --pg by default.
var storeGlobals struct {
	store, prefix string
}

func init() {
	def := envOr("SYNC_STORE", storeopen.Postgres)
	rootCmd.PersistentFlags().StringVar(&storeGlobals.store, "store", def,
		"event store: 'postgres' (in --pg) or the EventStoreDB/KurrentDB URL syncd runs on (its -store; env SYNC_STORE)")
	rootCmd.PersistentFlags().StringVar(&storeGlobals.prefix, "store-prefix", envOr("SYNCD_STORE_PREFIX", ""),
		"EventStoreDB only: syncd's -store-prefix (env SYNCD_STORE_PREFIX)")
}

// openStore opens the event store of --store. inline asks for the read models to be
// written in each append's transaction, which only the PostgreSQL store can do; on
// EventStoreDB syncd's projectors write them shortly after.
func openStore(ctx context.Context, inline bool, maxConns int32) (eventstore.Store, error) {
	o := storeopen.Options{Store: storeGlobals.store, Prefix: storeGlobals.prefix, PGDSN: globals.pgDSN, PGMaxConns: maxConns, Logger: logger()}
	if inline && !storeopen.IsESDB(o.Store) {
		o.Inline = projections.Inline
	}
	return storeopen.Open(ctx, o)
}

// envOr returns the environment variable k, or def when it is empty.
func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
