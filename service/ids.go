package service

import (
	"context"
	"embed"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

const idBlockSize = 1000

// idAllocator hands out item ids from blocks reserved in PostgreSQL, so ids are unique
// across every process of the service and survive restarts.
type idAllocator struct {
	db   *pgxpool.Pool
	mu   sync.Mutex
	next domain.ItemID // next free id of the current block
	end  domain.ItemID // first id past the current block
}

func migrate(ctx context.Context, db *pgxpool.Pool) error {
	sub, err := subFS()
	if err != nil {
		return err
	}
	return pgmigrate.Apply(ctx, db, "service", sub)
}

// take returns n fresh ids.
func (a *idAllocator) take(ctx context.Context, n int) ([]domain.ItemID, error) {
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
			a.next = domain.ItemID(block * idBlockSize)
			a.end = a.next + idBlockSize
		}
		ids = append(ids, a.next)
		a.next++
	}
	return ids, nil
}
