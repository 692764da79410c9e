// Package audit owns the replay of the history for people and tools: the log of a
// workspace (who changed what, from which device, when, including rejected items and
// lifecycle events), the life of one item (across shares, share.go), the state of a
// workspace at a past time or version rebuilt from history alone, and the verification
// of every stream's hash chain and of both halves of every share.
//
// It reads the event store directly, through the small Reader interface, and never the
// read models, so its answers stay true even when a projection is wrong. It must never
// write to the store, never load a whole history into memory (it reads in pages), and
// never read flags or the environment: cmd/syncctl does that and calls this package.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// Reader is the part of eventstore.Store the audit uses; every eventstore.Store is one.
type Reader interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error)
	StreamVersion(ctx context.Context, stream string) (uint64, error)
	ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
}

// Defaults of Config.
const (
	DefaultPageSize       = 1000
	DefaultFollowInterval = time.Second
	// MaxPageSize bounds Config.PageSize.
	MaxPageSize = 100000
)

// ProgressFunc is told, after each page read, how many events of stream have been read
// (done) out of how many it had when the replay started (total; 0 when unknown).
type ProgressFunc func(stream string, done, total uint64)

// Config configures an Auditor. The zero value is valid and means the defaults.
type Config struct {
	// PageSize is how many events one read returns (default DefaultPageSize, at most
	// MaxPageSize). Memory use is proportional to it, never to the history's length.
	PageSize int
	// FollowInterval is how often a followed log polls the stream's tail (default
	// DefaultFollowInterval).
	FollowInterval time.Duration
	// Progress, if set, is called after every page of a replay.
	Progress ProgressFunc
	// DecodeWorkers is how many goroutines decode a page of events (default
	// runtime.GOMAXPROCS(0)).
	DecodeWorkers int
	// Logger receives debug detail (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns the defaults (the zero Config means the same).
func DefaultConfig() Config {
	return Config{
		PageSize:       DefaultPageSize,
		FollowInterval: DefaultFollowInterval,
		DecodeWorkers:  runtime.GOMAXPROCS(0),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.PageSize < 0 || c.PageSize > MaxPageSize {
		return fmt.Errorf("audit config: page size %d out of range [0, %d]", c.PageSize, MaxPageSize)
	}
	if c.DecodeWorkers < 0 {
		return fmt.Errorf("audit config: negative decode workers %d", c.DecodeWorkers)
	}
	if c.FollowInterval < 0 {
		return fmt.Errorf("audit config: negative follow interval %s", c.FollowInterval)
	}
	return nil
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PageSize == 0 {
		c.PageSize = d.PageSize
	}
	if c.FollowInterval == 0 {
		c.FollowInterval = d.FollowInterval
	}
	if c.DecodeWorkers == 0 {
		c.DecodeWorkers = d.DecodeWorkers
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Auditor replays histories from a Reader. It holds no state between calls and is safe
// for concurrent use when its Reader is.
type Auditor struct {
	r   Reader
	cfg Config
	log *slog.Logger
}

// New returns an Auditor reading from r.
func New(r Reader, cfg Config) (*Auditor, error) {
	if r == nil {
		return nil, errors.New("audit: nil reader")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Auditor{r: r, cfg: cfg, log: cfg.Logger.With("component", "audit")}, nil
}

// ErrNoWorkspace is returned when a workspace's stream has no events.
var ErrNoWorkspace = errors.New("audit: workspace has no history")

// scan reads stream from version from onwards, page by page, calling fn for every event
// with its decoded form (or the decoding error) until fn returns stop=true or the
// stream's current end. It returns the version to read next (one past the last event
// handed to fn) and whether fn stopped the scan.
//
// Reading and decoding run one page ahead of fn, in a goroutine that scan owns and waits
// for, and a page is decoded by up to Config.DecodeWorkers goroutines, so that store
// round trips and JSON decoding overlap with fn's work. At most three pages are in
// memory at once.
func (a *Auditor) scan(ctx context.Context, stream string, from uint64, total uint64, fn func(rec eventstore.RecordedEvent, ev domain.Event, decodeErr error) (stop bool, err error)) (next uint64, stopped bool, err error) {
	type page struct {
		evs  []eventstore.RecordedEvent
		dec  []domain.Event
		errs []error
		err  error
	}
	rctx, cancel := context.WithCancel(ctx)
	pages := make(chan page, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pages)
		at := from
		for {
			evs, err := a.r.ReadStream(rctx, stream, at, a.cfg.PageSize)
			p := page{evs: evs, err: err}
			if err == nil {
				p.dec, p.errs = a.decodeAll(evs)
			}
			select {
			case pages <- p:
			case <-rctx.Done():
				return
			}
			if err != nil || len(evs) < a.cfg.PageSize {
				return
			}
			at = evs[len(evs)-1].StreamVersion + 1
		}
	}()
	defer func() {
		cancel()
		for range pages {
		}
		wg.Wait()
	}()

	next = from
	var done uint64
	if from > 1 {
		done = from - 1
	}
	for p := range pages {
		if p.err != nil {
			return next, false, fmt.Errorf("read %s from %d: %w", stream, next, p.err)
		}
		for i, rec := range p.evs {
			stop, err := fn(rec, p.dec[i], p.errs[i])
			if err != nil {
				return next, false, err
			}
			next = rec.StreamVersion + 1
			done++
			if stop {
				a.progress(stream, done, total)
				return next, true, nil
			}
		}
		a.progress(stream, done, total)
	}
	if err := ctx.Err(); err != nil {
		return next, false, fmt.Errorf("read %s from %d: %w", stream, next, err)
	}
	return next, false, nil
}

// decodeAll decodes a page of events, split among up to DecodeWorkers goroutines.
func (a *Auditor) decodeAll(evs []eventstore.RecordedEvent) ([]domain.Event, []error) {
	dec := make([]domain.Event, len(evs))
	errs := make([]error, len(evs))
	one := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dec[i], errs[i] = domain.Decode(evs[i].Type, evs[i].Data)
		}
	}
	workers := min(a.cfg.DecodeWorkers, len(evs)/minDecodeChunk)
	if workers <= 1 {
		one(0, len(evs))
		return dec, errs
	}
	var wg sync.WaitGroup
	chunk := (len(evs) + workers - 1) / workers
	for lo := 0; lo < len(evs); lo += chunk {
		hi := min(lo+chunk, len(evs))
		wg.Go(func() { one(lo, hi) })
	}
	wg.Wait()
	return dec, errs
}

// minDecodeChunk is the fewest events worth handing to a decoding goroutine.
const minDecodeChunk = 64

func (a *Auditor) progress(stream string, done, total uint64) {
	if a.cfg.Progress != nil {
		a.cfg.Progress(stream, done, total)
	}
}

// decode decodes a stored record into its domain event, naming the record on failure.
func decode(rec eventstore.RecordedEvent) (domain.Event, error) {
	ev, err := domain.Decode(rec.Type, rec.Data)
	return decoded(rec, ev, err)
}

// decoded names the record in a decoding error.
func decoded(rec eventstore.RecordedEvent, ev domain.Event, err error) (domain.Event, error) {
	if err != nil {
		return nil, fmt.Errorf("decode %s@%d (%s): %w (run `syncctl audit verify`)", rec.Stream, rec.StreamVersion, rec.Type, err)
	}
	return ev, nil
}

// workspaceOf returns the workspace id of a workspace stream name.
func workspaceOf(stream string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(stream, "workspace-")
	if !ok {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(rest)
	if err != nil || domain.WorkspaceStream(id) != stream {
		return uuid.Nil, false
	}
	return id, true
}

// userOf returns the user id of a user stream name.
func userOf(stream string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(stream, "user-")
	if !ok {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(rest)
	if err != nil || domain.UserStream(id) != stream {
		return uuid.Nil, false
	}
	return id, true
}
