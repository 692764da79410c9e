// Package itemids owns the allocation of item ids (PROTOCOL.md §3: unique across all
// workspaces): Postgres hands them out from blocks reserved in a PostgreSQL sequence, so
// ids are unique across every process of the service and survive restarts; Memory
// counts in one process, for unit tests. Both satisfy the service's IDAllocator.
//
// It owns the sequence item_id_blocks and its migration (Migrate, run by cmd/syncd and
// cmd/syncctl before the service is built). It must never hand out an id twice, and it
// knows nothing of workspaces or events.
package itemids

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationComponent names the migrations in schema_migrations. It is "service", where
// they were applied before this package owned them, so an existing database does not
// apply them again.
const migrationComponent = "service"

// Migrate creates or upgrades the sequence the Postgres allocator reserves blocks from.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("item ids: %w", err) // embedded: cannot fail
	}
	if err := pgmigrate.Apply(ctx, db, migrationComponent, sub); err != nil {
		return fmt.Errorf("item ids: %w", err)
	}
	return nil
}

// BlockSize is how many ids one reservation in PostgreSQL takes.
const BlockSize = 1000

// Postgres hands out item ids from blocks reserved in PostgreSQL (one nextval per
// block); the ids of a block never used are skipped. It is safe for concurrent use.
type Postgres struct {
	db   *pgxpool.Pool
	mu   sync.Mutex
	next domain.ItemID // next free id of the current block
	end  domain.ItemID // first id past the current block
}

// NewPostgres returns an allocator over db, whose migrations Migrate applied.
func NewPostgres(db *pgxpool.Pool) *Postgres { return &Postgres{db: db} }

// Take returns n fresh ids.
func (a *Postgres) Take(ctx context.Context, n int) ([]domain.ItemID, error) {
	if n == 0 {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]domain.ItemID, 0, n)
	for len(ids) < n {
		if a.next == a.end {
			var block int64
			if err := a.db.QueryRow(ctx, `SELECT nextval('item_id_blocks')`).Scan(&block); err != nil {
				return nil, fmt.Errorf("reserve item ids: %w", err)
			}
			a.next = domain.ItemID(block * BlockSize)
			a.end = a.next + BlockSize
		}
		ids = append(ids, a.next)
		a.next++
	}
	return ids, nil
}

// Memory hands out item ids 1, 2, 3… in one process: for unit tests, never for a server
// (its ids start again at every start). The zero value is ready; it is safe for
// concurrent use.
type Memory struct {
	mu   sync.Mutex
	last domain.ItemID
}

// Take returns n fresh ids.
func (m *Memory) Take(_ context.Context, n int) ([]domain.ItemID, error) {
	if n == 0 {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]domain.ItemID, n)
	for i := range ids {
		m.last++
		ids[i] = m.last
	}
	return ids, nil
}
