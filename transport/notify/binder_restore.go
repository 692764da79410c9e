package notify

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"

	"github.com/stacksync-es/syncservice/transport/topology"
)

// deviceBindings is one device of the binder's tables with the workspaces of its user.
type deviceBindings struct {
	user, device uuid.UUID
	workspaces   []uuid.UUID
}

// restoreWorkers is how many channels a restore uses at once (the broker serves
// channels concurrently; each bind is a round trip).
const restoreWorkers = 8

// restore binds every existing device queue of the binder's tables to its user's
// exchange and to the exchanges of its user's workspaces, then declares the marker. It
// declares each exchange once, then binds the queues on restoreWorkers channels; a queue
// that no longer exists (expired) is passed over: the device's next updateDevice
// declares and binds it.
func (b *Binder) restore(ctx context.Context, conn *amqp.Connection) error {
	began := time.Now()
	var devs []deviceBindings
	if err := b.f.retry(ctx, "read membership tables", func(ctx context.Context) error {
		var err error
		devs, err = loadBindings(ctx, b.f.db, b.cfg.Name)
		return err
	}); err != nil {
		return err
	}
	b.log.Info("topology marker missing (fresh or restarted broker): restoring device queue bindings", "devices", len(devs))
	seen := map[uuid.UUID]bool{}
	var exchanges []uuid.UUID
	for _, d := range devs {
		for _, id := range append([]uuid.UUID{d.user}, d.workspaces...) {
			if !seen[id] {
				seen[id] = true
				exchanges = append(exchanges, id)
			}
		}
	}
	if err := inParallel(ctx, conn, len(exchanges), func(c *channels, i int) error {
		ch, err := c.get()
		if err != nil {
			return err
		}
		return topology.DeclareEventExchange(ch, exchanges[i])
	}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var missing, bindings atomic.Int64
	if err := inParallel(ctx, conn, len(devs), func(c *channels, i int) error {
		d := devs[i]
		for j, id := range append([]uuid.UUID{d.user}, d.workspaces...) {
			ch, err := c.get()
			if err != nil {
				return err
			}
			q := topology.DeviceQueue(d.user, d.device)
			if err := ch.QueueBind(q, "", topology.EventExchange(id), false, nil); err != nil {
				if notFound(err) && j == 0 {
					missing.Add(1) // the queue expired (every exchange exists by now)
					return nil
				}
				return fmt.Errorf("bind %s to %s: %w", q, topology.EventExchange(id), err)
			}
			bindings.Add(1)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("restore: open channel: %w", err)
	}
	defer ch.Close()
	if err := topology.DeclareMarker(ch); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	b.f.update(func(s *Status) { s.Restores++ })
	b.log.Info("device queue bindings restored; topology marker declared", "devices", len(devs), "exchanges", len(exchanges),
		"without_queue", missing.Load(), "bindings", bindings.Load(), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// inParallel calls fn(c, i) for every i in [0, n) on restoreWorkers workers, each with
// channels of its own on conn, and returns the first error.
func inParallel(ctx context.Context, conn *amqp.Connection, n int, fn func(c *channels, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range min(restoreWorkers, n) {
		g.Go(func() error {
			c := &channels{conn: conn}
			defer c.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := fn(c, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// loadBindings reads every device of the binder's tables with its user's workspaces.
func loadBindings(ctx context.Context, db *pgxpool.Pool, binder string) ([]deviceBindings, error) {
	rows, err := db.Query(ctx, `SELECT d.user_id, d.device,
			coalesce(array_agg(m.workspace ORDER BY m.workspace) FILTER (WHERE m.workspace IS NOT NULL), '{}')
		FROM binder_devices d
		LEFT JOIN binder_members m ON m.binder = d.binder AND m.user_id = d.user_id
		WHERE d.binder = $1
		GROUP BY d.user_id, d.device
		ORDER BY d.user_id, d.device`, binder)
	if err != nil {
		return nil, fmt.Errorf("read tables of binder %s: %w", binder, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deviceBindings, error) {
		var d deviceBindings
		err := r.Scan(&d.user, &d.device, &d.workspaces)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tables of binder %s: %w", binder, err)
	}
	return out, nil
}
