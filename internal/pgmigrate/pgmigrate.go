// Package pgmigrate applies a component's numbered SQL migrations (NNN_name.sql files,
// usually embedded with //go:embed) to PostgreSQL, once each, under an advisory lock so
// that several processes starting together apply each file exactly once.
package pgmigrate

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Execer is what Apply needs of a pool or connection.
type Execer interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Apply runs, in one transaction, every migration of files (its top-level *.sql files,
// ordered by their numeric prefix) not yet recorded for component in schema_migrations.
func Apply(ctx context.Context, db Execer, component string, files fs.FS) error {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return fmt.Errorf("migrate %s: list: %w", component, err)
	}
	type migration struct {
		version int
		name    string
	}
	var ms []migration
	for _, n := range names {
		prefix, _, ok := strings.Cut(n, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil {
			return fmt.Errorf("migrate %s: %s: name must start with a number and '_'", component, n)
		}
		ms = append(ms, migration{v, n})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })

	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: begin: %w", component, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rollback after commit is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgmigrate'))`); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", component, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component text NOT NULL, version int NOT NULL, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("migrate %s: version table: %w", component, err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = $1`, component).Scan(&current); err != nil {
		return fmt.Errorf("migrate %s: read version: %w", component, err)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		sql, err := fs.ReadFile(files, m.name)
		if err != nil {
			return fmt.Errorf("migrate %s: read %s: %w", component, m.name, err)
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("migrate %s: apply %s: %w", component, m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)`, component, m.version, m.name); err != nil {
			return fmt.Errorf("migrate %s: record %s: %w", component, m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", component, err)
	}
	return nil
}
