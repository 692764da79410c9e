package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/eventstore"
)

// largeOpBytes is the event data (records' Data and Metadata) of one append batch, or
// of one event read, from which the connection that carried it is closed instead of
// going back to the pool. pgx keeps, per connection, the read buffer it grew for the
// largest message (until the connection's next read) and, through the stale entries of
// its reused parameter list, the encoded parameters of the largest statement of a batch
// (until a statement with as many parameters): each about the size of the operation,
// and held for as long as the connection stays idle. After a fill of a 100,000-item
// workspace in commits of 5,000 items that was about 18 MB of syncd's live heap
// (docs/benchmarks.md, "syncd's memory after getChanges of 100,000 items"); a new
// connection costs a few milliseconds, once per large operation.
const largeOpBytes = 1 << 20

// recordBytes is the event data of appends.
func recordBytes(appends []eventstore.StreamAppend) int {
	n := 0
	for _, a := range appends {
		for _, r := range a.Records {
			n += len(r.Data) + len(r.Metadata)
		}
	}
	return n
}

// largestEvent is the event data of the largest of evs.
func largestEvent(evs []eventstore.RecordedEvent) int {
	n := 0
	for i := range evs {
		n = max(n, len(evs[i].Data)+len(evs[i].Metadata))
	}
	return n
}

// release gives conn back to the pool, or closes it when it carried an operation of
// at least largeOpBytes (*bytes, read when release runs: a deferred call sees what the
// operation set), so that the buffers pgx grew for it go with it.
func release(conn *pgxpool.Conn, bytes *int) {
	if *bytes < largeOpBytes {
		conn.Release()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Hijack().Close(ctx) // a failed Terminate still closes the socket
}
