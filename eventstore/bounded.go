package eventstore

import "context"

// BoundedReader is implemented by stores that can bound a read by the bytes it returns,
// not only by the number of events, without fetching more than the bound from the
// server. A record may be up to MaxRecordSize, so a page of N events may otherwise hold
// N × 4 MiB.
//
// Both methods return what ReadAll and ReadStream would return with the same limit,
// cut before the first event that would take the page's size (see Size) past maxBytes;
// the first event is always returned when one is available, whatever its size, so a
// reader always makes progress. A page shorter than limit is therefore not proof that
// the reader has reached the end: see MayHaveMore.
type BoundedReader interface {
	ReadAllBytes(ctx context.Context, from Position, limit int, maxBytes int64) ([]RecordedEvent, error)
	ReadStreamBytes(ctx context.Context, stream string, from uint64, limit int, maxBytes int64) ([]RecordedEvent, error)
}

// AllReader reads the global order (a Store is one).
type AllReader interface {
	ReadAll(ctx context.Context, from Position, limit int) ([]RecordedEvent, error)
}

// StreamReader reads one stream (a Store is one).
type StreamReader interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]RecordedEvent, error)
}

// Size is the size of an event as the byte bounds count it: its Data plus Metadata, the
// same measure as MaxRecordSize.
func Size(ev *RecordedEvent) int64 { return int64(len(ev.Data) + len(ev.Metadata)) }

// Bytes is the total Size of evs.
func Bytes(evs []RecordedEvent) int64 {
	var n int64
	for i := range evs {
		n += Size(&evs[i])
	}
	return n
}

// TrimToBytes returns the longest prefix of evs whose total Size is at most maxBytes,
// and at least the first event. maxBytes <= 0 means no bound.
func TrimToBytes(evs []RecordedEvent, maxBytes int64) []RecordedEvent {
	if maxBytes <= 0 {
		return evs
	}
	var total int64
	for i := range evs {
		total += Size(&evs[i])
		if total > maxBytes && i > 0 {
			return evs[:i]
		}
	}
	return evs
}

// MayHaveMore reports whether a page read with limit and maxBytes may have stopped
// before the end of what was available: it holds limit events, or it was possibly cut
// by the byte bound (the next event, at most MaxRecordSize, could have taken it past
// maxBytes). When false, the reader has read everything that was visible.
func MayHaveMore(page []RecordedEvent, limit int, maxBytes int64) bool {
	if len(page) >= limit {
		return true
	}
	return maxBytes > 0 && len(page) > 0 && Bytes(page) > maxBytes-MaxRecordSize
}

// ReadAllBounded reads like ReadAll, bounded by maxBytes as BoundedReader describes.
// A store without BoundedReader is read by count and the page trimmed to the bound (the
// page is bounded, not what was fetched). maxBytes <= 0 means no bound.
func ReadAllBounded(ctx context.Context, s AllReader, from Position, limit int, maxBytes int64) ([]RecordedEvent, error) {
	if b, ok := s.(BoundedReader); ok && maxBytes > 0 {
		return b.ReadAllBytes(ctx, from, limit, maxBytes)
	}
	evs, err := s.ReadAll(ctx, from, limit)
	if err != nil {
		return nil, err
	}
	return TrimToBytes(evs, maxBytes), nil
}

// ReadStreamBounded reads like ReadStream, bounded by maxBytes as BoundedReader
// describes, with the same fallback as ReadAllBounded.
func ReadStreamBounded(ctx context.Context, s StreamReader, stream string, from uint64, limit int, maxBytes int64) ([]RecordedEvent, error) {
	if b, ok := s.(BoundedReader); ok && maxBytes > 0 {
		return b.ReadStreamBytes(ctx, stream, from, limit, maxBytes)
	}
	evs, err := s.ReadStream(ctx, stream, from, limit)
	if err != nil {
		return nil, err
	}
	return TrimToBytes(evs, maxBytes), nil
}
