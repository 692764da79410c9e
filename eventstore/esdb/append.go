package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stacksync-es/syncservice/eventstore"
)

// Append writes records atomically at the end of stream if expected holds; see the
// package comment for how retried batches are recognised.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, records ...eventstore.Record) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, expected, records); err != nil {
		return eventstore.AppendResult{}, err
	}
	if strings.HasPrefix(s.cfg.StreamPrefix+stream, "$") {
		return eventstore.AppendResult{}, fmt.Errorf("%w: stream %q starts with '$' (EventStoreDB system stream)", eventstore.ErrInvalidAppend, stream)
	}
	for i, r := range records {
		if strings.HasPrefix(r.Type, "$") {
			return eventstore.AppendResult{}, fmt.Errorf("%w: record %d has type %q, starting with '$' (EventStoreDB system event)", eventstore.ErrInvalidAppend, i, r.Type)
		}
	}
	ctx, c, done, err := s.begin(ctx)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %s: %w", stream, err)
	}
	defer done()
	res, err := s.append(ctx, c, stream, expected, records)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append %d records to %s (expected %s): %w", len(records), stream, expected, err)
	}
	return res, nil
}

func (s *Store) append(ctx context.Context, c *conn, stream string, expected eventstore.ExpectedVersion, records []eventstore.Record) (eventstore.AppendResult, error) {
	full := s.cfg.StreamPrefix + stream
	n := len(records)
	wantV, exact := expected.Version() // exact: NoStream or Exact

	tail, last, err := s.tail(ctx, c, full, n+s.cfg.DedupWindow)
	if err != nil {
		return eventstore.AppendResult{}, s.classify(ctx, c, err)
	}
	cur := uint64(last + 1) // the stream's version

	// A retried or overlapping batch near the tail.
	if res, found, err := s.checkBatch(ctx, c, full, tail, records); err != nil || found {
		return res, err
	}
	if exact && cur != wantV {
		// The batch's slots may hold it from an earlier append beyond the window.
		if cur > wantV && (len(tail) == 0 || tail[0].EventNumber > wantV) {
			evs, err := s.slots(ctx, c, full, wantV, n)
			if err != nil {
				return eventstore.AppendResult{}, s.classify(ctx, c, err)
			}
			if res, found, err := s.checkBatch(ctx, c, full, evs, records); err != nil || found {
				return res, err
			}
		}
		return eventstore.AppendResult{}, &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: cur}
	}

	var rev esdb.ExpectedRevision = esdb.Any{}
	if exact {
		if wantV == 0 {
			rev = esdb.NoStream{}
		} else {
			rev = esdb.Revision(wantV - 1)
		}
	}
	evs := make([]esdb.EventData, n)
	for i, r := range records {
		ct := esdb.ContentTypeBinary
		if json.Valid(r.Data) {
			ct = esdb.ContentTypeJson
		}
		evs[i] = esdb.EventData{EventID: r.ID, EventType: r.Type, ContentType: ct, Data: r.Data, Metadata: r.Metadata}
	}
	wr, err := callCtx(ctx, c, func() (*esdb.WriteResult, error) {
		return c.c.AppendToStream(ctx, full, esdb.AppendToStreamOptions{ExpectedRevision: rev}, evs...)
	}, nil)
	if err != nil {
		return eventstore.AppendResult{}, s.appendError(ctx, c, stream, full, expected, err)
	}

	// The reply's positions are not the event's own ({commit, commit} of the write), so
	// read the last event back for its position; this also checks the reply.
	lastRev := wr.NextExpectedVersion
	got, err := s.slots(ctx, c, full, lastRev, 1)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("appended, reading back revision %d: %w", lastRev, s.classify(ctx, c, err))
	}
	if len(got) != 1 || got[0].EventID != records[n-1].ID {
		return eventstore.AppendResult{}, fmt.Errorf("appended, but revision %d of %s does not hold record %s", lastRev, full, records[n-1].ID)
	}
	return eventstore.AppendResult{
		StreamVersion: lastRev + 1,
		Position:      position(got[0].Position),
		// With Any, a fresh write lands after the tail read above; a lower revision is
		// the server's deduplication of an earlier write of the same ids.
		Duplicate: !exact && int64(lastRev) < last+int64(n),
	}, nil
}

// checkBatch looks for records' ids among evs (consecutive events of the stream, oldest
// first). The whole batch, in order, at consecutive revisions is a duplicate: it
// returns the original result. Some of the ids only is an overlap: ErrInvalidAppend. A
// batch that starts before evs is checked by reading its slots.
func (s *Store) checkBatch(ctx context.Context, c *conn, full string, evs []*esdb.RecordedEvent, records []eventstore.Record) (eventstore.AppendResult, bool, error) {
	idx := make(map[uuid.UUID]int, len(records))
	for i, r := range records {
		idx[r.ID] = i
	}
	for i, e := range evs {
		j, ok := idx[e.EventID]
		if !ok {
			continue
		}
		// e holds records[j]: the batch would start at revision e.EventNumber-j.
		if uint64(j) > e.EventNumber {
			return overlap(records[j].ID)
		}
		start := e.EventNumber - uint64(j)
		var run []*esdb.RecordedEvent
		if first := i - j; first >= 0 && first+len(records) <= len(evs) {
			run = evs[first : first+len(records)] // the batch's slots are all in evs
		} else {
			var err error
			if run, err = s.slots(ctx, c, full, start, len(records)); err != nil {
				return eventstore.AppendResult{}, false, s.classify(ctx, c, err)
			}
		}
		if len(run) != len(records) {
			return overlap(records[j].ID)
		}
		for k, r := range records {
			if run[k].EventID != r.ID {
				return overlap(records[j].ID)
			}
		}
		lastEv := run[len(run)-1]
		return eventstore.AppendResult{
			StreamVersion: lastEv.EventNumber + 1,
			Position:      position(lastEv.Position),
			Duplicate:     true,
		}, true, nil
	}
	return eventstore.AppendResult{}, false, nil
}

func overlap(id uuid.UUID) (eventstore.AppendResult, bool, error) {
	return eventstore.AppendResult{}, false, fmt.Errorf("%w: record %s was appended before in another batch", eventstore.ErrInvalidAppend, id)
}

// appendError maps a failed AppendToStream. WrongExpectedVersion carries the actual
// revision only in its message, so the version is read.
func (s *Store) appendError(ctx context.Context, c *conn, stream, full string, expected eventstore.ExpectedVersion, err error) error {
	var ee *esdb.Error
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeWrongExpectedVersion) {
		if expected.IsAny() {
			// With Any the server reports a batch whose first ids it recently wrote but
			// whose later ones it did not ("corrupted idempotency") this way.
			return fmt.Errorf("%w: some of the records were appended before in another batch: %w", eventstore.ErrInvalidAppend, err)
		}
		_, last, rerr := s.tail(ctx, c, full, 1)
		if rerr != nil {
			return fmt.Errorf("wrong expected version, then reading the version: %w", s.classify(ctx, c, rerr))
		}
		return &eventstore.WrongVersionError{Stream: stream, Expected: expected, Actual: uint64(last + 1)}
	}
	if errors.As(err, &ee) && ee.IsErrorCode(esdb.ErrorCodeStreamDeleted) {
		return fmt.Errorf("%w: stream is deleted: %w", eventstore.ErrInvalidAppend, err)
	}
	if status.Code(err) == codes.InvalidArgument {
		return fmt.Errorf("%w: the server refused the append (its MaxAppendSize, 1 MiB by default, is below the batch?): %w", eventstore.ErrRecordTooLarge, err)
	}
	return s.classify(ctx, c, err)
}
