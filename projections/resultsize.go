package projections

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/budget"
)

// errTooLarge says an answer would exceed Queries.MaxResultBytes. The queries the
// service calls return it marked with protocol.ErrResultTooLarge (see tooLarge), which
// is what callers check with errors.Is.
var errTooLarge = errors.New("projections: result too large")

// tooLarge marks an answer refused as too large with protocol.ErrResultTooLarge
// (PROTOCOL.md §4 ResultTooLarge); any other error is returned as it is.
func tooLarge(err error) error {
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("%w: %w", protocol.ErrResultTooLarge, err)
	}
	return err
}

// Byte bounds of the answers (PROTOCOL.md §4).
const (
	// DefaultMaxResultBytes bounds a getChanges or getItemVersions answer.
	DefaultMaxResultBytes = 64 << 20
	// DefaultPageBytes is the byte budget of a getChangesSince page: a page ends early,
	// at a whole version, once its items pass it.
	DefaultPageBytes = 4 << 20
)

// itemFixedBytes bounds the encoded size of an item version's JSON apart from its
// strings: the field names, two UUIDs, a time, a status and seven numbers.
const itemFixedBytes = 420

// itemSizeSQL estimates, in SQL over a row of items or item_history, what itemSize
// does in Go (without the escapes): the page walk reads it with each version's key.
const itemSizeSQL = `(octet_length(filename) + octet_length(mimetype)
	+ coalesce(octet_length(array_to_string(chunks, '')), 0) + 3 * coalesce(cardinality(chunks), 0))`

// itemSize estimates the bytes an item version takes in a JSON answer, from above: a
// string's bytes count once, those JSON escapes (control characters, quotes,
// backslashes, <, >, & and invalid UTF-8) six times.
func itemSize(md *domain.ItemMetadata) int64 {
	n := int64(itemFixedBytes) + jsonStringSize(md.Filename) + jsonStringSize(md.Mimetype)
	for _, c := range md.Chunks {
		n += jsonStringSize(c) + 1
	}
	return n
}

func jsonStringSize(s string) int64 {
	n := int64(2)
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b < 0x20, b == '"', b == '\\', b == '<', b == '>', b == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			n += 6
		} else {
			n += int64(w)
		}
		i += w
	}
	return n
}

// growStep is how many bytes of estimate a sizer gathers before growing the request's
// memory reservation (internal/budget), so that a large answer takes the pool's lock
// every 256 KiB, not on every row.
const growStep = 256 << 10

// sizer adds up the estimated size of an answer as its rows stream in, refusing it as
// soon as the estimate passes limit, and grows the request's memory reservation (if ctx
// carries one) as it goes.
type sizer struct {
	ctx     context.Context
	limit   int64 // 0: no limit
	total   int64
	pending int64 // estimate not yet taken from the reservation
}

func newSizer(ctx context.Context, limit int64) *sizer { return &sizer{ctx: ctx, limit: limit} }

// add counts an item version of the answer and returns its estimate.
func (s *sizer) add(md *domain.ItemMetadata) (int64, error) {
	n := itemSize(md)
	return n, s.addBytes(n)
}

// addBytes counts n bytes of estimate.
func (s *sizer) addBytes(n int64) error {
	if s == nil {
		return nil
	}
	s.total += n
	if s.limit > 0 && s.total > s.limit {
		return fmt.Errorf("%w: over %d bytes", errTooLarge, s.limit)
	}
	s.pending += n
	if s.pending >= growStep {
		n, s.pending = s.pending, 0
		return budget.Grow(s.ctx, n)
	}
	return nil
}

// flush takes the rest of the estimate from the reservation.
func (s *sizer) flush() error {
	if s == nil || s.pending == 0 {
		return nil
	}
	n := s.pending
	s.pending = 0
	return budget.Grow(s.ctx, n)
}
