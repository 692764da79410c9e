package main

import (
	"context"
	"log/slog"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/storeopen"
	"github.com/stacksync-es/syncservice/projections"
)

// eventStoreFlags declares -store and -store-prefix (SYNC_STORE is read too, shared
// with syncctl like SYNC_PG_DSN).
func (c *config) eventStoreFlags(f *flagSet) {
	def := storeopen.Postgres
	if v := f.getenv("SYNC_STORE"); v != "" {
		def = v
	}
	f.str(&c.store, "store", "SYNCD_STORE", def, "event store: 'postgres' (in -pg) or an EventStoreDB/KurrentDB URL such as esdb://localhost:2113?tls=false "+
		"(read models and checkpoints stay in -pg; the projectors write them, so -inline-projection and -direct-publish are off) (SYNC_STORE is read too)")
	f.str(&c.storePrefix, "store-prefix", "SYNCD_STORE_PREFIX", "", "EventStoreDB only: prefix of every stream of this deployment, so that several share one server")
}

// applyStore turns off what an EventStoreDB store cannot do: an append there is not in
// a PostgreSQL transaction, so the read models cannot be written inline, and without
// them a commit may not be published by the appending process (reads must see what
// was notified). openEventStore logs it.
func (c *config) applyStore() {
	if storeopen.IsESDB(c.store) {
		c.inline, c.directPublish = false, false
	}
}

// openEventStore opens the store of cfg; with EventStoreDB it says what runs differently.
func openEventStore(ctx context.Context, cfg config, log *slog.Logger) (eventstore.Store, error) {
	o := storeopen.Options{Store: cfg.store, Prefix: cfg.storePrefix, PGDSN: cfg.pgDSN, Logger: log.With("component", "eventstore")}
	if cfg.inline {
		// The read models' tables must exist before the first append: openNode migrates
		// them before any role runs.
		o.Inline = projections.Inline
	}
	if storeopen.IsESDB(cfg.store) {
		log.Warn("event store: EventStoreDB; inline read models and direct publishing are off: the projectors write the read models "+
			"and the notifier publishes each commit once the workspace model has it", "store", storeopen.Redact(cfg.store), "prefix", cfg.storePrefix)
	}
	return storeopen.Open(ctx, o)
}
