package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dropBulkIndexes drops the constraints and indexes of the model's bulk-loaded tables in
// schema and returns the statements that build them again, as the migrations made them.
func dropBulkIndexes(ctx context.Context, pool *pgxpool.Pool, m *Model, schema string) (restore []string, err error) {
	var drop []string
	for _, t := range m.bulkLoaded {
		qt := pgx.Identifier{schema, t}.Sanitize()
		rows, err := pool.Query(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY conname`, qt)
		if err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		var constraints []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return nil, err
			}
			constraints = append(constraints, name)
			drop = append(drop, `ALTER TABLE `+qt+` DROP CONSTRAINT `+pgx.Identifier{name}.Sanitize())
			restore = append(restore, `ALTER TABLE `+qt+` ADD CONSTRAINT `+pgx.Identifier{name}.Sanitize()+` `+def)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", qt, err)
		}
		rows, err = pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes
			WHERE schemaname = $1 AND tablename = $2 AND NOT indexname = ANY($3) ORDER BY indexname`, schema, t, constraints)
		if err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", qt, err)
		}
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return nil, err
			}
			drop = append(drop, `DROP INDEX `+pgx.Identifier{schema, name}.Sanitize())
			restore = append(restore, def)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", qt, err)
		}
	}
	for _, q := range drop {
		if _, err := pool.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare bulk load: %s: %w", q, err)
		}
	}
	return restore, nil
}
