package service

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/changeset"
)

// ItemEncoder appends the encoding of one item version to dst and returns it. md, its
// strings and its chunks are only valid during the call.
type ItemEncoder = func(dst []byte, md *domain.ItemMetadata) []byte

// encodedReads is what a ReadModel offers to answer getChanges already encoded
// (projections.Queries does): the stamp that names the content of a workspace's answer
// (its version and a tag that changes whenever the workspace is rewritten), and the
// answer rendered row by row with the stamp it was read at, or patched from an earlier
// answer (base) with the items written since.
type encodedReads interface {
	ChangesStamp(ctx context.Context, ws uuid.UUID) (version, tag int64, err error)
	EncodedAnswer(ctx context.Context, ws uuid.UUID, base *changeset.Base, enc ItemEncoder) (changeset.Answer, error)
}

// ChangesStamp names one content of a workspace's getChanges answer: an answer read at
// a stamp may be served again while the workspace's stamp is the same. It changes with
// every commit to the workspace, and whenever the read model rewrites the workspace (a
// rebuild, a restore). The zero stamp names nothing.
type ChangesStamp struct {
	Version int64 // the workspace's version
	Tag     int64 // changes whenever the read model writes the workspace's row
}

// ChangesStamp checks that user may read the workspace and returns its current stamp,
// read at the time of the call (one indexed row): a commit visible before it (and so
// notified before it, PROTOCOL.md §5) is in the answer any stamp as recent names. ok is
// false when the read model has no stamps (the in-memory one): then no answer may be
// served again.
func (s *Service) ChangesStamp(ctx context.Context, user, ws uuid.UUID) (st ChangesStamp, ok bool, err error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return ChangesStamp{}, false, err
	}
	er, ok := s.reads.(encodedReads)
	if !ok {
		return ChangesStamp{}, false, nil
	}
	st, err = read(ctx, s.reads, func(ctx context.Context) (ChangesStamp, error) {
		v, tag, err := er.ChangesStamp(ctx, ws)
		return ChangesStamp{Version: v, Tag: tag}, err
	})
	if err != nil {
		return ChangesStamp{}, false, fmt.Errorf("stamp of the changes of %s: %w", ws, err)
	}
	return st, true, nil
}

// EncodedChanges answers getChanges as the array of the items enc renders, parents
// first: "[" item "," item ... "]" (a JSON array for a JSON enc), in pieces to be
// written one after the other, and the stamp it was read at (zero when the read model
// has none). A read model that streams renders each row as it is read: the workspace's
// items are never held as structs.
func (s *Service) EncodedChanges(ctx context.Context, user, ws uuid.UUID, enc ItemEncoder) ([][]byte, ChangesStamp, error) {
	a, err := s.EncodedAnswer(ctx, user, ws, nil, enc)
	a.Detach()
	return a.Pieces, ChangesStamp{Version: a.Version, Tag: a.Tag}, err
}

// EncodedAnswer is EncodedChanges with where each item lies in the answer (Items),
// for a cache that keeps it. Given base, an answer of the workspace kept from an
// earlier call, a read model that can builds the answer from it and the items written
// since its version (Patched), byte for byte what a full read gives. The in-memory
// read model answers without Items or stamp.
func (s *Service) EncodedAnswer(ctx context.Context, user, ws uuid.UUID, base *changeset.Base, enc ItemEncoder) (changeset.Answer, error) {
	if err := s.authorize(ctx, user, ws); err != nil {
		return changeset.Answer{}, err
	}
	er, ok := s.reads.(encodedReads)
	if !ok { // the in-memory read model: encode what Changes gives
		items, err := s.Changes(ctx, user, ws)
		if err != nil {
			return changeset.Answer{}, err
		}
		return changeset.Answer{Pieces: [][]byte{encodeItems(items, enc)}}, nil
	}
	a, err := read(ctx, s.reads, func(ctx context.Context) (changeset.Answer, error) {
		return er.EncodedAnswer(ctx, ws, base, enc)
	})
	if err != nil {
		return changeset.Answer{}, fmt.Errorf("changes of %s: %w", ws, err)
	}
	return a, nil
}

func encodeItems(items []domain.ItemMetadata, enc ItemEncoder) []byte {
	out := []byte{'['}
	for i := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = enc(out, &items[i])
	}
	return append(out, ']')
}
