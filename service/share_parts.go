package service

import (
	"context"
	"fmt"

	"github.com/stacksync-es/syncservice/domain"
)

// A share too large for one event records its move in parts (domain/share_parts.go),
// adjacent in each stream: the share's result and its replay carry the joined move,
// with the first part's stored id and position (the notifier publishes a split move's
// notifyCommit under its first part's id).

// joinedMoves returns the move of a decided share, joined from its parts: W's
// ItemsMovedOut and S's ItemsMovedIn (nil when the share only added members).
func joinedMoves(d domain.ShareDecision) (*domain.ItemsMovedOut, *domain.ItemsMovedIn, error) {
	var outs []domain.ItemsMovedOut
	var ins []domain.ItemsMovedIn
	for _, e := range d.Source {
		if o, ok := e.(domain.ItemsMovedOut); ok {
			outs = append(outs, o)
		}
	}
	for _, e := range d.Target {
		if in, ok := e.(domain.ItemsMovedIn); ok {
			ins = append(ins, in)
		}
	}
	if len(outs) == 0 || len(ins) == 0 {
		return nil, nil, nil
	}
	out, err := domain.JoinMovedOut(outs)
	if err != nil {
		return nil, nil, err
	}
	in, err := domain.JoinMovedIn(ins)
	if err != nil {
		return nil, nil, err
	}
	return &out, &in, nil
}

// readMove reads the share event stored at stream version v (an ItemsMovedOut or
// ItemsMovedIn, its first part) and, when it is split, the parts after it, and returns
// the joined move with the first part's id and position.
func (s *Service) readMove(ctx context.Context, stream string, v uint64) (outcome, error) {
	first, err := s.readOriginal(ctx, stream, v)
	if err != nil {
		return outcome{}, err
	}
	n := 1
	switch e := first.event.(type) {
	case domain.ItemsMovedOut:
		n = e.PartCount()
	case domain.ItemsMovedIn:
		n = e.PartCount()
	}
	if n == 1 {
		return first, nil
	}
	recs, err := s.store.ReadStream(ctx, stream, v, n)
	if err != nil {
		return outcome{}, fmt.Errorf("read the %d parts of %s@%d: %w", n, stream, v, err)
	}
	evs := make([]domain.Event, len(recs))
	for i, r := range recs {
		if evs[i], err = domain.Decode(r.Type, r.Data); err != nil {
			return outcome{}, fmt.Errorf("read the parts of %s@%d: %w", stream, v, err)
		}
	}
	joined, err := joinParts(first.event, evs)
	if err != nil {
		return outcome{}, fmt.Errorf("read the parts of %s@%d: %w", stream, v, err)
	}
	first.event = joined
	return first, nil
}

// joinParts joins evs, the parts of the move whose first part is first.
func joinParts(first domain.Event, evs []domain.Event) (domain.Event, error) {
	switch first.(type) {
	case domain.ItemsMovedOut:
		parts := make([]domain.ItemsMovedOut, 0, len(evs))
		for _, e := range evs {
			p, ok := e.(domain.ItemsMovedOut)
			if !ok {
				return nil, fmt.Errorf("a %s among the parts of an ItemsMovedOut", e.EventType())
			}
			parts = append(parts, p)
		}
		return domain.JoinMovedOut(parts)
	default:
		parts := make([]domain.ItemsMovedIn, 0, len(evs))
		for _, e := range evs {
			p, ok := e.(domain.ItemsMovedIn)
			if !ok {
				return nil, fmt.Errorf("a %s among the parts of an ItemsMovedIn", e.EventType())
			}
			parts = append(parts, p)
		}
		return domain.JoinMovedIn(parts)
	}
}
