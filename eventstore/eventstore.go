// Package eventstore owns the one storage contract of the service: append records to a
// stream with an expected version, read a stream, read every stream in one global order,
// and subscribe to that order from a position. Optional parts are interfaces a backend
// may implement: BatchAppender (group commit), MultiAppender (an atomic append to several
// streams; Supports tells whether a store has it, and Limited why not), BoundedReader
// and LagReader. WithPhases lets a caller time the phases of its append (phases.go).
//
// Records are opaque bytes with a type name: this package and its backends know nothing of
// domain types, and must never import the rest of the project. Backends live in
// subpackages (postgres, esdb, memstore); each one passes the conformance suite in
// eventstore/storetest against a real server.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxRecordSize bounds the size of one record's Data plus Metadata. Appending a larger
// record fails with ErrRecordTooLarge and writes nothing.
const MaxRecordSize = 4 << 20

// MaxNameLen bounds the length in bytes of a stream name and of a record type. Names
// must also be valid UTF-8 without NUL bytes; ValidateAppend rejects others with
// ErrInvalidAppend, so that every backend (a PostgreSQL text key, a gRPC string) can
// store every name it accepts.
const MaxNameLen = 1024

// Record is one event to append. ID is the idempotency key: appending the same IDs to the
// same stream again, as the same batch, writes nothing and returns the original result.
type Record struct {
	ID       uuid.UUID
	Type     string
	Data     []byte
	Metadata []byte // optional
	// Value, if set, is the value Data encodes, as the appender encoded it: a backend
	// never reads, stores or compares it, and hands it only to an inline hook
	// (RecordedEvent.Value; PostgreSQL: Config.Inline), which may use it instead of
	// decoding Data again. An appender that sets it must set it to exactly what
	// decoding Data gives.
	Value any
}

// RecordedEvent is a stored record as read back.
type RecordedEvent struct {
	ID            uuid.UUID
	Stream        string
	StreamVersion uint64 // 1 for the first event of a stream, gap-free
	Type          string
	Data          []byte
	Metadata      []byte
	Position      Position // place in the global order
	RecordedAt    time.Time
	// Inline reports that the store's inline hook (PostgreSQL: Config.Inline) wrote the
	// read models for this event in the append's own transaction; a follower that keeps
	// the same read models need not apply it again. Always false for other backends.
	Inline bool
	// Value is the appender's Record.Value, in the records given to an inline hook
	// only: nil in every event read back.
	Value any
}

// Position is a place in the global order of all events. Its two numbers are the
// backend's own (PostgreSQL: transaction id and global sequence; EventStoreDB: commit and
// prepare positions); callers only compare, store and pass them back. The zero Position
// is the start, before every event.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event.
var Start = Position{}

// Less reports whether p comes before q in the global order.
func (p Position) Less(q Position) bool {
	if p.Commit != q.Commit {
		return p.Commit < q.Commit
	}
	return p.Prepare < q.Prepare
}

// IsZero reports whether p is the start position.
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string { return fmt.Sprintf("%d/%d", p.Commit, p.Prepare) }

// ExpectedVersion is the optimistic-concurrency condition of an append.
// Build one with Any, NoStream or Exact.
type ExpectedVersion struct {
	kind    expectKind
	version uint64
}

type expectKind uint8

const (
	expectInvalid expectKind = iota
	expectAny
	expectNoStream
	expectExact
)

// Any appends whatever the stream's version.
func Any() ExpectedVersion { return ExpectedVersion{kind: expectAny} }

// NoStream appends only if the stream has no events yet.
func NoStream() ExpectedVersion { return ExpectedVersion{kind: expectNoStream} }

// Exact appends only if the stream's last event has version v. Exact(0) equals NoStream().
func Exact(v uint64) ExpectedVersion {
	if v == 0 {
		return NoStream()
	}
	return ExpectedVersion{kind: expectExact, version: v}
}

// IsAny reports whether e places no condition on the stream.
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// Version returns the stream version e expects (0 for NoStream) and false for Any or an
// invalid (zero-value) ExpectedVersion.
func (e ExpectedVersion) Version() (uint64, bool) {
	switch e.kind {
	case expectNoStream:
		return 0, true
	case expectExact:
		return e.version, true
	}
	return 0, false
}

// Valid reports whether e was built by Any, NoStream or Exact.
func (e ExpectedVersion) Valid() bool { return e.kind != expectInvalid }

func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectAny:
		return "any"
	case expectNoStream:
		return "no-stream"
	case expectExact:
		return fmt.Sprintf("%d", e.version)
	}
	return "invalid"
}

// AppendResult tells where an append landed.
type AppendResult struct {
	StreamVersion uint64   // version of the last appended event
	Position      Position // global position of the last appended event
	Duplicate     bool     // the records had been appended before; nothing was written
}

// Store is the storage contract. Implementations are safe for concurrent use.
type Store interface {
	// Append writes records atomically at the end of stream if expected holds. It fails
	// with *WrongVersionError when it does not; with ErrRecordTooLarge, ErrInvalidAppend or
	// ErrClosed on bad input, writing nothing. Appending no records is ErrInvalidAppend.
	// Appending again the records of an earlier successful append (same ids, same stream,
	// same batch, in order) writes nothing and returns that append's result with
	// Duplicate set, whatever the expected version; any other reuse of a stored record id
	// fails with ErrInvalidAppend (or *WrongVersionError) and writes nothing.
	Append(ctx context.Context, stream string, expected ExpectedVersion, records ...Record) (AppendResult, error)

	// ReadStream returns up to limit events of stream with version >= from, oldest first.
	// A stream that does not exist reads as empty.
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]RecordedEvent, error)

	// StreamVersion returns the version of the stream's last event, 0 if it has none.
	StreamVersion(ctx context.Context, stream string) (uint64, error)

	// ReadAll returns up to limit events strictly after from, in the global order. It never
	// returns an event while an event before it in that order may still become visible,
	// so a reader that resumes from the last position it saw never skips one.
	ReadAll(ctx context.Context, from Position, limit int) ([]RecordedEvent, error)

	// Subscribe calls handle with batches of the events after from, in global order:
	// first catching up, then following new appends, until ctx ends (returning ctx.Err())
	// or handle fails (returning its error). A batch is never empty.
	Subscribe(ctx context.Context, from Position, handle func(ctx context.Context, batch []RecordedEvent) error) error

	// Close releases the store's resources. It is idempotent; calls after it fail with
	// ErrClosed.
	Close() error
}

// Sentinel errors. Check them with errors.Is.
var (
	ErrWrongVersion   = errors.New("eventstore: wrong expected version")
	ErrRecordTooLarge = errors.New("eventstore: record too large")
	ErrInvalidAppend  = errors.New("eventstore: invalid append")
	ErrClosed         = errors.New("eventstore: store closed")
	// ErrTransient marks a failure that may succeed when retried (lost connection,
	// serialization failure, timeout). Wrapped together with the cause.
	ErrTransient = errors.New("eventstore: transient failure")
)

// WrongVersionError is returned when an append's expected version does not hold.
type WrongVersionError struct {
	Stream   string
	Expected ExpectedVersion
	Actual   uint64 // the stream's version at the time of the append (0: no stream)
}

func (e *WrongVersionError) Error() string {
	return fmt.Sprintf("eventstore: append to %s expected version %s, stream is at %d", e.Stream, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrWrongVersion) true.
func (e *WrongVersionError) Unwrap() error { return ErrWrongVersion }

// Transient reports whether err is worth retrying unchanged.
func Transient(err error) bool { return errors.Is(err, ErrTransient) }

// TransientError wraps cause so that Transient reports true for it.
func TransientError(cause error) error { return fmt.Errorf("%w: %w", ErrTransient, cause) }

// ValidateAppend checks the backend-independent rules of an append; backends call it first.
func ValidateAppend(stream string, expected ExpectedVersion, records []Record) error {
	if stream == "" {
		return fmt.Errorf("%w: empty stream name", ErrInvalidAppend)
	}
	if err := checkName("stream name", stream); err != nil {
		return err
	}
	if !expected.Valid() {
		return fmt.Errorf("%w: expected version not set (use Any, NoStream or Exact)", ErrInvalidAppend)
	}
	if len(records) == 0 {
		return fmt.Errorf("%w: no records", ErrInvalidAppend)
	}
	seen := make(map[uuid.UUID]bool, len(records))
	for i, r := range records {
		if r.ID == uuid.Nil {
			return fmt.Errorf("%w: record %d has no id", ErrInvalidAppend, i)
		}
		if seen[r.ID] {
			return fmt.Errorf("%w: record id %s repeated in one append", ErrInvalidAppend, r.ID)
		}
		seen[r.ID] = true
		if r.Type == "" {
			return fmt.Errorf("%w: record %d has no type", ErrInvalidAppend, i)
		}
		if err := checkName(fmt.Sprintf("record %d type", i), r.Type); err != nil {
			return err
		}
		if len(r.Data)+len(r.Metadata) > MaxRecordSize {
			return fmt.Errorf("%w: record %d is %d bytes, limit %d", ErrRecordTooLarge, i, len(r.Data)+len(r.Metadata), MaxRecordSize)
		}
	}
	return nil
}

// checkName applies the MaxNameLen, UTF-8 and NUL rules to a stream name or record type.
func checkName(what, name string) error {
	switch {
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidAppend, what, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidAppend, what)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidAppend, what)
	}
	return nil
}
