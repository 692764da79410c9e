package eventstore

import (
	"context"
	"time"
)

// LagReader is implemented by stores that can measure the backlog after a position
// without reading any event's data (a page of the global order may otherwise hold
// limit × MaxRecordSize bytes).
type LagReader interface {
	// CountAfter returns how many events ReadAll(ctx, from, limit) would return (so at
	// most limit, with exactly its visibility rule), and the RecordedAt of the first of
	// them (zero when there is none).
	CountAfter(ctx context.Context, from Position, limit int) (n int, oldest time.Time, err error)
}

// lagPageBytes bounds the event data of one page CountAfter reads from a store without
// LagReader.
const lagPageBytes = 16 << 20

// CountAfter counts the events after from in the global order, up to limit, and
// returns the RecordedAt of the first of them (zero when there is none), as
// LagReader describes. A store without LagReader is read in pages bounded in bytes
// (ReadAllBounded), so at most one page of data is held at a time.
func CountAfter(ctx context.Context, s AllReader, from Position, limit int) (int, time.Time, error) {
	if l, ok := s.(LagReader); ok {
		return l.CountAfter(ctx, from, limit)
	}
	n := 0
	var oldest time.Time
	for n < limit {
		want := limit - n
		page, err := ReadAllBounded(ctx, s, from, want, lagPageBytes)
		if err != nil {
			return 0, time.Time{}, err
		}
		if len(page) == 0 {
			break
		}
		if n == 0 {
			oldest = page[0].RecordedAt
		}
		n += len(page)
		if !MayHaveMore(page, want, lagPageBytes) {
			break
		}
		from = page[len(page)-1].Position
	}
	return n, oldest, nil
}
