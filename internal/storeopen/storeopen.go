// Package storeopen owns the choice of event store that syncd and syncctl make with
// -store / --store: the PostgreSQL store in the service's own database (the default), or
// an EventStoreDB/KurrentDB server (eventstore/esdb). The read models, checkpoints and
// item ids stay in PostgreSQL either way; only the event store moves.
package storeopen

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/esdb"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
)

// Postgres is the -store value of the PostgreSQL store in the -pg database.
const Postgres = "postgres"

// Options says which store to open.
type Options struct {
	// Store is Postgres ('' too) or an EventStoreDB connection string (esdb://… or
	// esdb+discover://…, e.g. esdb://localhost:2113?tls=false).
	Store string
	// Prefix namespaces the EventStoreDB streams (esdb.Config.StreamPrefix), so that
	// several deployments share one server; ignored for PostgreSQL.
	Prefix string
	// PGDSN is the service's PostgreSQL database (the event store when Store is Postgres).
	PGDSN string
	// PGMaxConns sizes the PostgreSQL store's pool (0: its default).
	PGMaxConns int32
	// Inline writes the read models in each PostgreSQL append's transaction (nil: none).
	// An EventStoreDB append cannot share a transaction with PostgreSQL: there the
	// projectors write the read models afterwards, and Inline must be nil.
	Inline func(recs []eventstore.RecordedEvent, b *pgx.Batch) error
	Logger *slog.Logger
}

// IsESDB reports whether store names an EventStoreDB server.
func IsESDB(store string) bool {
	return strings.HasPrefix(store, "esdb://") || strings.HasPrefix(store, "esdb+discover://")
}

// Validate reports a -store value (and prefix) Open would refuse, without connecting.
func Validate(store, prefix string) error {
	switch {
	case store == "" || store == Postgres:
		return nil
	case IsESDB(store):
		if err := (esdb.Config{URL: store, StreamPrefix: prefix}).Validate(); err != nil {
			return fmt.Errorf("-store: %w", err)
		}
		return nil
	}
	return fmt.Errorf("-store must be %q or an EventStoreDB URL (esdb://host:2113?tls=false), not %q", Postgres, Redact(store))
}

// Open opens the store o names.
func Open(ctx context.Context, o Options) (eventstore.Store, error) {
	if err := Validate(o.Store, o.Prefix); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if IsESDB(o.Store) {
		if o.Inline != nil {
			return nil, fmt.Errorf("open event store: inline read models need the PostgreSQL store (an EventStoreDB append is not in a PostgreSQL transaction)")
		}
		s, err := esdb.Open(ctx, esdb.Config{URL: o.Store, StreamPrefix: o.Prefix, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open event store: %w", err)
		}
		return s, nil
	}
	s, err := postgres.Open(ctx, postgres.Config{DSN: o.PGDSN, MaxConns: o.PGMaxConns, Logger: log, Inline: o.Inline})
	if err != nil {
		return nil, fmt.Errorf("open event store: %w", err)
	}
	return s, nil
}

// Redact returns store with any password replaced, for logs and errors.
func Redact(store string) string {
	u, err := url.Parse(store)
	if err != nil || u.User == nil {
		if err != nil {
			return "(unparsable store URL)"
		}
		return store
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
