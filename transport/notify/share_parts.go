package notify

import (
	"context"
	"fmt"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// A share's move too large for one event is recorded in parts (domain/share_parts.go),
// adjacent in their stream and durable together. Its notifyCommit is still one message
// per workspace (PROTOCOL.md §8 rule 3): the first part publishes the joined move, under
// its own id; the other parts publish nothing.

// readParts reads the n parts of the move whose first part is rec, in rec's stream.
// A store failure is err (retried); parts that are missing, do not decode or do not
// join are bad (set aside).
func (p *publisher) readParts(ctx context.Context, rec eventstore.RecordedEvent, n int) (evs []domain.Event, bad, err error) {
	recs, err := p.store.ReadStream(ctx, rec.Stream, rec.StreamVersion, n)
	if err != nil {
		return nil, nil, fmt.Errorf("read the %d parts of %s@%d: %w", n, rec.Stream, rec.StreamVersion, err)
	}
	if len(recs) != n {
		return nil, fmt.Errorf("%s@%d: %d of its %d parts stored", rec.Stream, rec.StreamVersion, len(recs), n), nil
	}
	for _, r := range recs {
		ev, derr := domain.Decode(r.Type, r.Data)
		if derr != nil {
			return nil, derr, nil
		}
		evs = append(evs, ev)
	}
	return evs, nil, nil
}

// joinedMovedOut returns the whole move e (rec's event, the first part) records.
func (p *publisher) joinedMovedOut(ctx context.Context, rec eventstore.RecordedEvent, e domain.ItemsMovedOut) (domain.ItemsMovedOut, error, error) {
	if e.PartCount() == 1 {
		return e, nil, nil
	}
	evs, bad, err := p.readParts(ctx, rec, e.PartCount())
	if bad != nil || err != nil {
		return e, bad, err
	}
	parts := make([]domain.ItemsMovedOut, 0, len(evs))
	for _, ev := range evs {
		part, ok := ev.(domain.ItemsMovedOut)
		if !ok {
			return e, fmt.Errorf("%s@%d: a %s among its parts", rec.Stream, rec.StreamVersion, ev.EventType()), nil
		}
		parts = append(parts, part)
	}
	joined, jerr := domain.JoinMovedOut(parts)
	return joined, jerr, nil
}

// joinedMovedIn returns the whole move e (rec's event, the first part) records.
func (p *publisher) joinedMovedIn(ctx context.Context, rec eventstore.RecordedEvent, e domain.ItemsMovedIn) (domain.ItemsMovedIn, error, error) {
	if e.PartCount() == 1 {
		return e, nil, nil
	}
	evs, bad, err := p.readParts(ctx, rec, e.PartCount())
	if bad != nil || err != nil {
		return e, bad, err
	}
	parts := make([]domain.ItemsMovedIn, 0, len(evs))
	for _, ev := range evs {
		part, ok := ev.(domain.ItemsMovedIn)
		if !ok {
			return e, fmt.Errorf("%s@%d: a %s among its parts", rec.Stream, rec.StreamVersion, ev.EventType()), nil
		}
		parts = append(parts, part)
	}
	joined, jerr := domain.JoinMovedIn(parts)
	return joined, jerr, nil
}
