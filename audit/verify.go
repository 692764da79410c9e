package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// BreakKind classifies the first break found in a stream.
type BreakKind string

// Kinds of break.
const (
	// BreakChain: an event's prevHash is not the hash of the stored event before it:
	// that event's content was altered, or an event was inserted, deleted or moved here.
	BreakChain BreakKind = "chain"
	// BreakVersionGap: stream versions are not contiguous from 1 (events deleted or
	// renumbered).
	BreakVersionGap BreakKind = "streamVersion"
	// BreakWorkspaceVersion: a workspace stream's commits do not number 1, 2, 3, …
	BreakWorkspaceVersion BreakKind = "workspaceVersion"
	// BreakForeign: a workspace (user) stream holds an event of another workspace (user).
	BreakForeign BreakKind = "foreignEvent"
	// BreakUndecodable: an event's bytes are not a known event type.
	BreakUndecodable BreakKind = "undecodable"
	// BreakTail: the store says the stream is longer than the events it returns.
	BreakTail BreakKind = "tail"
	// BreakEmpty: a stream asked for by name has no events at all: it never existed,
	// or it was deleted whole.
	BreakEmpty BreakKind = "empty"
)

// Break is the first place where a stream's history is not what was appended.
type Break struct {
	Kind          BreakKind `json:"kind"`
	StreamVersion uint64    `json:"streamVersion"` // of the event where it shows
	Type          string    `json:"type"`          // that event's type
	Expected      string    `json:"expected"`
	Found         string    `json:"found"`
	Detail        string    `json:"detail"`
}

// StreamReport is the result of verifying one stream.
type StreamReport struct {
	Stream string `json:"stream"`
	// Events is the number of events checked before the first break (all of them if
	// none).
	Events uint64 `json:"events"`
	// Head is the chain hash of the last event checked. The last event of a stream has
	// no successor to vouch for it: keep Head somewhere else to anchor it.
	Head string `json:"head"`
	// WorkspaceVersion is the last commit's workspaceVersion (workspace streams).
	WorkspaceVersion int64  `json:"workspaceVersion,omitempty"`
	Break            *Break `json:"break,omitempty"`
}

// Report is the result of a verification.
type Report struct {
	Streams []StreamReport `json:"streams"`
}

// OK reports whether no stream has a break.
func (r Report) OK() bool {
	for _, s := range r.Streams {
		if s.Break != nil {
			return false
		}
	}
	return true
}

// Broken returns the reports of the streams with a break.
func (r Report) Broken() []StreamReport {
	var out []StreamReport
	for _, s := range r.Streams {
		if s.Break != nil {
			out = append(out, s)
		}
	}
	return out
}

// Write prints the report: a line per stream and a summary (FormatTable), or one JSON
// object per stream (FormatJSONL).
func (r Report) Write(w io.Writer, f Format) error {
	bw := bufio.NewWriter(w)
	switch f {
	case FormatJSONL:
		enc := json.NewEncoder(bw)
		for _, s := range r.Streams {
			if err := enc.Encode(s); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
		}
	case FormatTable:
		var events uint64
		for _, s := range r.Streams {
			events += s.Events
			if s.Break == nil {
				fmt.Fprintf(bw, "ok      %s  %d events, head %s\n", s.Stream, s.Events, s.Head)
				continue
			}
			b := s.Break
			where := fmt.Sprintf("at stream version %d", b.StreamVersion)
			if b.Type != "" {
				where += " (" + b.Type + ")"
			}
			if b.StreamVersion == 0 {
				where = "before any event"
			}
			fmt.Fprintf(bw, "BROKEN  %s  %s: %s\n", s.Stream, where, b.Kind)
			fmt.Fprintf(bw, "        expected %s\n        found    %s\n        %s\n", b.Expected, b.Found, b.Detail)
		}
		fmt.Fprintf(bw, "%d streams, %d events verified, %d broken\n", len(r.Streams), events, len(r.Broken()))
	default:
		return fmt.Errorf("write report: unknown format %q", f)
	}
	return bw.Flush()
}

// Verify walks the hash chain of each named stream from its first event and reports,
// per stream, the first event whose content or order was altered, deleted or inserted.
// A workspace stream's share events must each have their other half in the other
// workspace's stream (BreakShare, share.go), read from the store if not verified here.
// A break is a finding, not an error: the error is for failures to read.
func (a *Auditor) Verify(ctx context.Context, streams ...string) (Report, error) {
	var r Report
	moves := map[string][]shareMove{}
	for _, s := range streams {
		sr, m, err := a.verifyStream(ctx, s)
		if err != nil {
			return r, err
		}
		r.Streams = append(r.Streams, sr)
		moves[s] = m
	}
	if err := a.checkShares(ctx, &r, moves); err != nil {
		return r, fmt.Errorf("verify: %w", err)
	}
	return r, nil
}

// VerifyAll verifies every stream of the store, found by reading the global order once.
// A stream whose events the global order does not show yet (PostgreSQL holds back
// events while an older transaction is open) is left out; name it to Verify instead.
func (a *Auditor) VerifyAll(ctx context.Context) (Report, error) {
	streams, err := a.Streams(ctx)
	if err != nil {
		return Report{}, err
	}
	return a.Verify(ctx, streams...)
}

// Streams lists every stream of the store in the order of its first event, by reading
// the global order in pages (memory grows with the number of streams, not of events).
func (a *Auditor) Streams(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	pos := eventstore.Start
	var done uint64
	for {
		page, err := a.r.ReadAll(ctx, pos, a.cfg.PageSize)
		if err != nil {
			return nil, fmt.Errorf("list streams: read all after %s: %w", pos, err)
		}
		for _, rec := range page {
			if !seen[rec.Stream] {
				seen[rec.Stream] = true
				out = append(out, rec.Stream)
			}
			pos = rec.Position
		}
		done += uint64(len(page))
		a.progress("$all", done, 0)
		if len(page) < a.cfg.PageSize {
			return out, nil
		}
	}
}

// recentHashes remembers the chain hashes of the last few events, to tell an inserted
// or moved event from an altered one.
const recentHashes = 16

// verifyStream verifies one stream and returns the share halves it records.
func (a *Auditor) verifyStream(ctx context.Context, stream string) (StreamReport, []shareMove, error) {
	sr := StreamReport{Stream: stream}
	tail, err := a.r.StreamVersion(ctx, stream)
	if err != nil {
		return sr, nil, fmt.Errorf("verify %s: %w", stream, err)
	}
	c := newStreamChecker(&sr)
	_, _, err = a.scan(ctx, stream, 1, tail, func(rec eventstore.RecordedEvent, ev domain.Event, decodeErr error) (bool, error) {
		if b := c.check(rec, ev, decodeErr); b != nil {
			sr.Break = b
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return sr, nil, fmt.Errorf("verify %s: %w", stream, err)
	}
	if sr.Break == nil && tail == 0 && sr.Events == 0 {
		sr.Break = &Break{Kind: BreakEmpty, Expected: "at least one event", Found: "no events",
			Detail: "the stream has no history: it never existed (check the name) or it was deleted whole"}
	}
	if sr.Break == nil && c.want-1 != tail {
		sr.Break = &Break{Kind: BreakTail, StreamVersion: c.want - 1, Expected: fmt.Sprintf("stream version %d at the end", tail),
			Found: fmt.Sprintf("stream version %d at the end", c.want-1), Detail: "the store's stream version is past its last readable event: events at the end were deleted"}
	}
	a.log.Debug("verified", "stream", stream, "events", sr.Events, "ok", sr.Break == nil)
	return sr, c.moves, nil
}

// streamChecker checks a stream's events one after another, in stream order, and
// records them in its report.
type streamChecker struct {
	sr          *StreamReport
	ws          uuid.UUID // the stream's workspace, if it is a workspace stream
	isWorkspace bool
	user        uuid.UUID // the stream's user, if it is a user stream
	isUser      bool
	moves       []shareMove // the share halves checked so far
	prev        string      // chain hash of the previous event
	want        uint64      // the stream version the next event must have
	recent      [recentHashes]struct {
		version uint64
		hash    string
	}
}

func newStreamChecker(sr *StreamReport) *streamChecker {
	c := &streamChecker{sr: sr, want: 1}
	c.ws, c.isWorkspace = workspaceOf(sr.Stream)
	c.user, c.isUser = userOf(sr.Stream)
	return c
}

// check checks the next event and returns the break it shows, or records it.
func (c *streamChecker) check(rec eventstore.RecordedEvent, ev domain.Event, decodeErr error) *Break {
	brk := func(kind BreakKind, expected, found, detail string) *Break {
		return &Break{Kind: kind, StreamVersion: rec.StreamVersion, Type: rec.Type, Expected: expected, Found: found, Detail: detail}
	}
	if rec.StreamVersion != c.want {
		return brk(BreakVersionGap, fmt.Sprintf("stream version %d", c.want), fmt.Sprintf("stream version %d", rec.StreamVersion), c.gapDetail(rec.StreamVersion))
	}
	if decodeErr != nil {
		return brk(BreakUndecodable, "a released event type and its JSON", decodeErr.Error(), "the event's type or body was altered, or it was written by no version of this service")
	}
	if got := ev.Prev(); got != c.prev {
		return brk(BreakChain, hashOrNone(c.prev), hashOrNone(got), c.chainDetail(got))
	}
	if b := c.checkOwner(ev, brk); b != nil {
		return b
	}
	if m, ok := moveOf(rec, ev); ok {
		c.moves = addMove(c.moves, m)
	}
	c.prev = domain.ChainHash(rec.Type, rec.Data)
	c.recent[rec.StreamVersion%recentHashes].version = rec.StreamVersion
	c.recent[rec.StreamVersion%recentHashes].hash = c.prev
	c.sr.Events++
	c.sr.Head = c.prev
	c.want++
	return nil
}

// gapDetail explains an event found at stream version got where c.want was due.
func (c *streamChecker) gapDetail(got uint64) string {
	switch {
	case got < c.want:
		return "stream versions repeat or go backwards (events inserted or reordered)"
	case got == c.want+1:
		return fmt.Sprintf("event %d is missing (deleted or renumbered)", c.want)
	default:
		return fmt.Sprintf("events %d to %d are missing (deleted or renumbered)", c.want, got-1)
	}
}

// chainDetail explains an event chained to the hash got instead of its predecessor's.
func (c *streamChecker) chainDetail(got string) string {
	want := c.want
	detail := fmt.Sprintf("the stored event %d is not the one this event was chained to: event %d was altered, or this event was altered, inserted, or moved here, or events before it were deleted", want-1, want-1)
	if want == 1 {
		detail = "the first event of a stream carries no previous hash: events before it were deleted, or it was altered or moved here"
	}
	for _, r := range c.recent {
		if r.hash != "" && r.hash == got && r.version < want-1 {
			detail = fmt.Sprintf("this event was chained to event %d: the events after that one (%d to %d) were inserted, or this event was moved here", r.version, r.version+1, want-1)
		}
	}
	return detail
}

// checkOwner checks that an event of a user or workspace stream belongs to it, and
// that a workspace's commits are numbered without gaps.
func (c *streamChecker) checkOwner(ev domain.Event, brk func(kind BreakKind, expected, found, detail string) *Break) *Break {
	if c.isUser {
		if id, ok := eventUser(ev); ok && id != c.user {
			return brk(BreakForeign, "user "+c.user.String(), "user "+id.String(), "an event of another user is stored in this stream")
		}
	}
	if !c.isWorkspace {
		return nil
	}
	if id, ok := eventWorkspace(ev); ok && id != c.ws {
		return brk(BreakForeign, "workspace "+c.ws.String(), "workspace "+id.String(), "an event of another workspace is stored in this stream")
	}
	if v, ok := workspaceVersionOf(ev); ok {
		if continuesMove(ev) { // a split move's later part repeats its first part's version
			if v != c.sr.WorkspaceVersion {
				return brk(BreakWorkspaceVersion, fmt.Sprintf("workspaceVersion %d", c.sr.WorkspaceVersion), fmt.Sprintf("workspaceVersion %d", v),
					"a later part of a share's move repeats the workspaceVersion of its first part")
			}
			return nil
		}
		if v != c.sr.WorkspaceVersion+1 {
			return brk(BreakWorkspaceVersion, fmt.Sprintf("workspaceVersion %d", c.sr.WorkspaceVersion+1), fmt.Sprintf("workspaceVersion %d", v), "commits are not numbered 1, 2, 3, … without gaps")
		}
		c.sr.WorkspaceVersion = v
	}
	return nil
}

func hashOrNone(h string) string {
	if h == "" {
		return `prevHash "" (none)`
	}
	return "prevHash " + h
}

// eventWorkspace returns the workspace an event of a workspace stream names.
func eventWorkspace(ev domain.Event) (id uuid.UUID, ok bool) {
	switch e := ev.(type) {
	case domain.Committed:
		return e.WorkspaceID, true
	case domain.WorkspaceCreated:
		return e.WorkspaceID, true
	case domain.MemberAdded:
		return e.WorkspaceID, true
	case domain.MemberRemoved:
		return e.WorkspaceID, true
	case domain.MemberWorkspaceUpdated:
		return e.WorkspaceID, true
	case domain.ItemsMovedOut:
		return e.WorkspaceID, true
	case domain.ItemsMovedIn:
		return e.WorkspaceID, true
	}
	return id, false
}

// workspaceVersionOf returns the workspaceVersion an event of a workspace stream takes:
// commits, and the two halves of a share's move (PROTOCOL.md §8).
func workspaceVersionOf(ev domain.Event) (int64, bool) {
	switch e := ev.(type) {
	case domain.Committed:
		return e.WorkspaceVersion, true
	case domain.ItemsMovedOut:
		return e.WorkspaceVersion, true
	case domain.ItemsMovedIn:
		return e.WorkspaceVersion, true
	}
	return 0, false
}

// continuesMove reports whether ev is a later part (not the first) of a share's move.
func continuesMove(ev domain.Event) bool {
	switch e := ev.(type) {
	case domain.ItemsMovedOut:
		return e.Part > 0
	case domain.ItemsMovedIn:
		return e.Part > 0
	}
	return false
}

// eventUser returns the user an event of a user stream names.
func eventUser(ev domain.Event) (id uuid.UUID, ok bool) {
	switch e := ev.(type) {
	case domain.UserCreated:
		return e.UserID, true
	case domain.UserQuotaChanged:
		return e.UserID, true
	case domain.UserRemoved:
		return e.UserID, true
	case domain.DeviceRegistered:
		return e.UserID, true
	case domain.DeviceUpdated:
		return e.UserID, true
	case domain.DeviceRemoved:
		return e.UserID, true
	}
	return id, false
}
