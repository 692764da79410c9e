package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden %s (run go test ./audit -update to create it): %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./audit -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func newAuditor(t testing.TB, r Reader, cfg Config) *Auditor {
	t.Helper()
	a, err := New(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func scriptStore(t *testing.T) (*memstore.Store, *histGen) {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return s, writeScript(t, s)
}

// collect is an EntrySink that keeps the rows.
type collect struct {
	mu   sync.Mutex
	rows []Entry
}

func (c *collect) Write(e Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = append(c.rows, e)
	return nil
}
func (c *collect) Flush() error { return nil }

func (c *collect) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.rows {
		if e.Outcome == "" {
			out = append(out, fmt.Sprint(e.StreamVersion))
		} else {
			out = append(out, fmt.Sprintf("%d/%d", e.StreamVersion, e.Index))
		}
	}
	return out
}

func render(t *testing.T, f Format, run func(EntrySink) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	sink, err := NewEntryWriter(&buf, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(sink); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLogGolden(t *testing.T) {
	s, _ := scriptStore(t)
	a := newAuditor(t, s, Config{})
	for _, f := range []Format{FormatTable, FormatJSONL} {
		out := render(t, f, func(sink EntrySink) error { return a.Log(ctxT(t), LogQuery{Workspace: scriptWS}, sink) })
		golden(t, "log."+string(f), out)
		if f == FormatJSONL {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 16 {
				t.Errorf("jsonl: %d lines, want 16 (one per item outcome and lifecycle event)", len(lines))
			}
			for i, l := range lines {
				var e Entry
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("jsonl line %d: %v", i+1, err)
				}
			}
		}
	}
}

func TestLogFilters(t *testing.T) {
	s, _ := scriptStore(t)
	at := func(min int) time.Time { return genStart.Add(time.Duration(min) * time.Minute) }
	item, member, memberDev := filePlan, memberID, memberDevice
	tests := []struct {
		name string
		q    LogQuery
		want string
	}{
		{"all", LogQuery{}, "1 2 3/0 3/1 4/0 5/0 5/1 5/2 6/0 7 8/0 9/0 10/0 10/1 11/0 12"},
		{"item", LogQuery{Item: &item}, "3/1 4/0 5/0 6/0 8/0 9/0 10/0"},
		{"user", LogQuery{User: &member}, "2 4/0 6/0 7 9/0 11/0 12"},
		{"device", LogQuery{Device: &memberDev}, "4/0 6/0 9/0 11/0"},
		{"since-until", LogQuery{Since: at(5), Until: at(8)}, "5/0 5/1 5/2 6/0 7"},
		{"versions", LogQuery{FromVersion: 4, ToVersion: 6}, "6/0 7 8/0 9/0"},
		{"from-last", LogQuery{FromVersion: 8}, "11/0 12"},
		{"to-first", LogQuery{ToVersion: 1}, "1 2 3/0 3/1"},
		{"item-from", LogQuery{Item: &item, FromVersion: 5}, "8/0 9/0 10/0"},
		{"beyond", LogQuery{FromVersion: 9}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, page := range []int{1, 3, 1000} {
				a := newAuditor(t, s, Config{PageSize: page})
				var c collect
				tc.q.Workspace = scriptWS
				if err := a.Log(ctxT(t), tc.q, &c); err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(c.keys(), " "); got != tc.want {
					t.Errorf("page size %d: rows %q, want %q", page, got, tc.want)
				}
			}
		})
	}
}

func TestLogErrors(t *testing.T) {
	s, _ := scriptStore(t)
	a := newAuditor(t, s, Config{})
	var c collect
	if err := a.Log(ctxT(t), LogQuery{Workspace: fixedID("nowhere")}, &c); !errors.Is(err, ErrNoWorkspace) {
		t.Errorf("unknown workspace: %v, want ErrNoWorkspace", err)
	}
	if err := a.Log(ctxT(t), LogQuery{Workspace: scriptWS, FromVersion: 5, ToVersion: 2}, &c); err == nil {
		t.Error("from after to: no error")
	}
	if len(c.rows) != 0 {
		t.Errorf("failed queries wrote %d rows", len(c.rows))
	}
}

// countingReader counts the events a replay reads and checks the page limit.
type countingReader struct {
	Reader
	mu       sync.Mutex
	events   int
	maxLimit int
}

func (c *countingReader) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := c.Reader.ReadStream(ctx, stream, from, limit)
	c.mu.Lock()
	c.events += len(evs)
	c.maxLimit = max(c.maxLimit, limit)
	c.mu.Unlock()
	return evs, err
}

// bulkHistory writes a workspace with n one-item commits (creations, then changes of
// the first items, with a member joining now and then).
func bulkHistory(tb testing.TB, s eventstore.Store, ws uuid.UUID, n, batch int) *histGen {
	h := newHistGen(tb, s, ws, batch)
	h.do(domain.CreateWorkspace{Name: "bulk", OwnerID: ownerID})
	const files = 1000
	versions := make([]int64, files+1)
	for i := 1; i < n; i++ {
		if i%5000 == 0 {
			h.do(domain.AddMember{UserID: fixedID(fmt.Sprint("member", i)), Name: "bulk"})
			continue
		}
		req := fmt.Sprint("req-", i)
		if i <= files {
			h.commit(req, ownerID, ownerDevice, h.item(it{temp: int64(i), version: 1, status: domain.StatusNew, name: fmt.Sprintf("f%d", i), size: 1, checksum: 1}))
			versions[i] = 1
			continue
		}
		k := i%files + 1
		id := domain.ItemID(k)
		versions[k]++
		h.commit(req, ownerID, ownerDevice, h.item(it{id: id, version: versions[k], status: domain.StatusChanged, name: fmt.Sprintf("f%d", k), size: int64(i%100 + 1), checksum: int64(i)}))
	}
	h.flush()
	return h
}

func TestLogSeeksAndPages(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	ws := fixedID("bulk")
	h := bulkHistory(t, s, ws, 3000, 500)
	last := h.w.Version()

	cr := &countingReader{Reader: s}
	a := newAuditor(t, cr, Config{PageSize: 50})
	var c collect
	if err := a.Log(ctxT(t), LogQuery{Workspace: ws, FromVersion: last - 9}, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.rows) != 10 || c.rows[0].WorkspaceVersion != last-9 || c.rows[9].WorkspaceVersion != last {
		t.Fatalf("from version %d: %d rows, want the last 10 commits", last-9, len(c.rows))
	}
	if cr.events > 500 {
		t.Errorf("seeking to version %d of %d read %d events; a binary search reads a few hundred at most", last-9, last, cr.events)
	}
	if cr.maxLimit > 50 {
		t.Errorf("read pages of %d events, configured 50", cr.maxLimit)
	}

	cr.events = 0
	c = collect{}
	if err := a.Log(ctxT(t), LogQuery{Workspace: ws, ToVersion: 20}, &c); err != nil {
		t.Fatal(err)
	}
	// Stopping at version 20 leaves at most the page being handled and two read ahead.
	if len(c.rows) != 21 || cr.events > 3*50 {
		t.Errorf("to version 20: %d rows (want 21) after reading %d events (want it to stop within three pages)", len(c.rows), cr.events)
	}
}

func TestLogFollow(t *testing.T) {
	s, h := scriptStore(t)
	a := newAuditor(t, s, Config{FollowInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var c collect
	done := make(chan error, 1)
	go func() { done <- a.Log(ctx, LogQuery{Workspace: scriptWS, FromVersion: 8, Follow: true}, &c) }()
	testenv.Eventually(t, 5*time.Second, func() error {
		if got := strings.Join(c.keys(), " "); got != "11/0 12" {
			return fmt.Errorf("rows %q so far", got)
		}
		return nil
	})
	h.commit("r9", ownerID, ownerDevice, h.item(it{id: fileNotes, version: 2, status: domain.StatusChanged, name: "notes.md", size: 6, checksum: 556}))
	h.flush()
	testenv.Eventually(t, 5*time.Second, func() error {
		if got := strings.Join(c.keys(), " "); got != "11/0 12 13/0" {
			return fmt.Errorf("rows %q so far", got)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("followed log ended with %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("followed log did not end after cancel")
	}
}

func TestItemLifeGolden(t *testing.T) {
	s, _ := scriptStore(t)
	a := newAuditor(t, s, Config{PageSize: 4})
	for _, id := range []domain.ItemID{filePlan, fileNotes} {
		for _, f := range []Format{FormatTable, FormatJSONL} {
			out := render(t, f, func(sink EntrySink) error { return a.ItemLife(ctxT(t), scriptWS, id, sink) })
			golden(t, fmt.Sprintf("item%d.%s", id, f), out)
		}
	}
	var c collect
	if err := a.ItemLife(ctxT(t), scriptWS, filePlan, &c); err != nil {
		t.Fatal(err)
	}
	var changes []string
	for _, r := range c.rows {
		changes = append(changes, string(r.Outcome)+": "+r.Change)
	}
	want := []string{
		`stored: created file "plan.txt" in item 1`,
		`stored: content changed (size 10 → 20)`,
		`rejected: `,
		`stored: renamed "plan.txt" → "plan-v2.txt"`,
		`stored: moved item 1 → root`,
		`stored: deleted`,
		`stored: revived; content changed (size 0 → 30)`,
	}
	if !slices.Equal(changes, want) {
		t.Errorf("life of item %d:\n%s\nwant\n%s", filePlan, strings.Join(changes, "\n"), strings.Join(want, "\n"))
	}
	if err := a.ItemLife(ctxT(t), scriptWS, 99, &c); !errors.Is(err, ErrNoItem) {
		t.Errorf("unknown item: %v, want ErrNoItem", err)
	}
}

func TestAt(t *testing.T) {
	s, h := scriptStore(t)
	a := newAuditor(t, s, Config{PageSize: 2})
	ver := func(v int64) *int64 { return &v }

	// The latest state rebuilt by At equals the state the writer folded.
	st, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Version: ver(scriptVersion)})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(h.w.Items())
	got, _ := json.Marshal(st.Items)
	if !bytes.Equal(got, want) {
		t.Errorf("state at the last version differs from the folded state\n got %s\nwant %s", got, want)
	}
	if st.StreamVersion != 12 {
		t.Errorf("state at the last version folded %d events, want all 12", st.StreamVersion)
	}

	for _, v := range []int64{0, 3, 6} {
		st, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Version: ver(v)})
		if err != nil {
			t.Fatal(err)
		}
		if st.WorkspaceVersion != v {
			t.Errorf("at version %d: state is at version %d", v, st.WorkspaceVersion)
		}
		var json, table bytes.Buffer
		if err := WriteItems(&json, FormatJSON, st.Items); err != nil {
			t.Fatal(err)
		}
		if err := WriteItems(&table, FormatTable, st.Items); err != nil {
			t.Fatal(err)
		}
		golden(t, fmt.Sprintf("at_v%d.json", v), json.Bytes())
		golden(t, fmt.Sprintf("at_v%d.table", v), table.Bytes())
	}

	// Version 6 (plan deleted) is the state between 09:09 (r6) and 09:10 (r7).
	byVer, _ := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Version: ver(6)})
	byTime, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Time: genStart.Add(9*time.Minute + 30*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(byVer.Items)
	b2, _ := json.Marshal(byTime.Items)
	if !bytes.Equal(b1, b2) || byTime.WorkspaceVersion != 6 {
		t.Errorf("state at 09:09:30 (version %d) differs from the state at version 6", byTime.WorkspaceVersion)
	}
	if byTime.Items[1].Status != domain.StatusDeleted {
		t.Errorf("at version 6 plan is %s, want DELETED", byTime.Items[1].Status)
	}
	early, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Time: genStart})
	if err != nil || len(early.Items) != 0 || early.StreamVersion != 0 {
		t.Errorf("state before the first event: %d items, %d events, %v", len(early.Items), early.StreamVersion, err)
	}

	if _, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS, Version: ver(scriptVersion + 1)}); !errors.Is(err, ErrBeyondHistory) {
		t.Errorf("version beyond history: %v, want ErrBeyondHistory", err)
	}
	if _, err := a.At(ctxT(t), AtQuery{Workspace: scriptWS}); err == nil {
		t.Error("no time and no version: no error")
	}
}

func TestVerifyClean(t *testing.T) {
	s, _ := scriptStore(t)
	// A user stream too, so that --all finds more than one kind of stream.
	rec := userRecord(t, ownerID)
	if _, err := s.Append(ctxT(t), domain.UserStream(ownerID), eventstore.NoStream(), rec); err != nil {
		t.Fatal(err)
	}
	a := newAuditor(t, s, Config{PageSize: 5})
	r, err := a.VerifyAll(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Streams) != 2 || r.Streams[0].Events != 12 || r.Streams[0].WorkspaceVersion != scriptVersion {
		t.Fatalf("clean history: %+v", r)
	}
	var out bytes.Buffer
	if err := r.Write(&out, FormatTable); err != nil {
		t.Fatal(err)
	}
	golden(t, "verify_ok.table", out.Bytes())

	// The same user event in another user's stream is foreign there.
	other := domain.UserStream(memberID)
	if _, err := s.Append(ctxT(t), other, eventstore.NoStream(), eventstore.Record{ID: fixedID("copy"), Type: rec.Type, Data: rec.Data}); err != nil {
		t.Fatal(err)
	}
	r, err = a.Verify(ctxT(t), other)
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Streams[0].Break; b == nil || b.Kind != BreakForeign || b.StreamVersion != 1 {
		t.Fatalf("another user's event in %s: break %+v, want foreignEvent at 1", other, b)
	}

	r, err = a.Verify(ctxT(t), domain.WorkspaceStream(fixedID("nowhere")))
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Streams[0].Break; b == nil || b.Kind != BreakEmpty {
		t.Fatalf("a stream with no events: break %+v, want empty", b)
	}
}

func userRecord(t *testing.T, user uuid.UUID) eventstore.Record {
	typ, data, err := domain.Encode(domain.UserCreated{UserID: user, Name: "owner", Email: "owner@example.org", At: genStart})
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Record{ID: fixedID("user-created"), Type: typ, Data: data}
}

// tamperReader serves a stream as a tampered backend would: fn rewrites the events
// of every page.
type tamperReader struct {
	Reader
	fn func([]eventstore.RecordedEvent) []eventstore.RecordedEvent
}

func (r tamperReader) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	all, err := r.Reader.ReadStream(ctx, stream, 1, 1000)
	if err != nil {
		return nil, err
	}
	all = r.fn(all)
	var out []eventstore.RecordedEvent
	for _, e := range all {
		if e.StreamVersion >= from && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func TestVerifyFindsEachKindOfBreak(t *testing.T) {
	s, _ := scriptStore(t)
	edit := func(v uint64, f func(*eventstore.RecordedEvent)) func([]eventstore.RecordedEvent) []eventstore.RecordedEvent {
		return func(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
			evs = slices.Clone(evs)
			f(&evs[v-1])
			return evs
		}
	}
	replace := func(old, new string) func(*eventstore.RecordedEvent) {
		return func(e *eventstore.RecordedEvent) {
			e.Data = bytes.Replace(e.Data, []byte(old), []byte(new), 1)
		}
	}
	tests := []struct {
		name    string
		fn      func([]eventstore.RecordedEvent) []eventstore.RecordedEvent
		kind    BreakKind
		version uint64
	}{
		{"altered", edit(5, replace(`"notes.md"`, `"notez.md"`)), BreakChain, 6},
		{"undecodable", edit(4, replace(`{`, `[`)), BreakUndecodable, 4},
		{"untouched", edit(12, replace(`"prevHash"`, `"prevHash"`)), "", 0},
		{"workspace version", edit(11, replace(`"workspaceVersion":8`, `"workspaceVersion":9`)), BreakWorkspaceVersion, 11},
		{"foreign", edit(12, replace(scriptWS.String(), fixedID("other").String())), BreakForeign, 12},
		{"deleted", func(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
			return slices.Delete(slices.Clone(evs), 4, 5) // stream version 5
		}, BreakVersionGap, 6},
		{"deleted and renumbered", func(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
			evs = slices.Delete(slices.Clone(evs), 4, 5)
			for i := range evs {
				evs[i].StreamVersion = uint64(i + 1)
			}
			return evs
		}, BreakChain, 5},
		{"swapped", func(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
			evs = slices.Clone(evs)
			evs[4].Data, evs[5].Data = evs[5].Data, evs[4].Data
			evs[4].Type, evs[5].Type = evs[5].Type, evs[4].Type
			return evs
		}, BreakChain, 5},
		{"tail deleted", func(evs []eventstore.RecordedEvent) []eventstore.RecordedEvent {
			return slices.Clone(evs[:11])
		}, BreakTail, 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuditor(t, tamperReader{Reader: s, fn: tc.fn}, Config{PageSize: 3})
			r, err := a.Verify(ctxT(t), domain.WorkspaceStream(scriptWS))
			if err != nil {
				t.Fatal(err)
			}
			b := r.Streams[0].Break
			switch {
			case tc.kind == "" && b != nil:
				t.Fatalf("unexpected break %+v", b)
			case tc.kind == "":
			case b == nil:
				t.Fatalf("no break found, want %s at %d", tc.kind, tc.version)
			case b.Kind != tc.kind || b.StreamVersion != tc.version:
				t.Fatalf("break %s at %d (%s), want %s at %d", b.Kind, b.StreamVersion, b.Detail, tc.kind, tc.version)
			}
		})
	}
}

func TestMain(m *testing.M) {
	// Every goroutine a replay starts (read-ahead, decoding) ends with it.
	goleak.VerifyTestMain(m)
}

func TestCancelledReplayFails(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	ws := fixedID("bulk")
	bulkHistory(t, s, ws, 2000, 500)
	a := newAuditor(t, s, Config{PageSize: 10})
	ctx, cancel := context.WithCancel(ctxT(t))
	var c collect
	sink := cancelAfter{EntrySink: &c, n: 100, cancel: cancel}
	err := a.Log(ctx, LogQuery{Workspace: ws}, &sink)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("log cancelled midway: %v, want context.Canceled", err)
	}
	if _, err := a.At(ctx, AtQuery{Workspace: ws, Version: new(int64)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("at with a cancelled context: %v, want context.Canceled", err)
	}
}

// cancelAfter cancels its context after n rows.
type cancelAfter struct {
	EntrySink
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(e Entry) error {
	c.n--
	if c.n == 0 {
		c.cancel()
	}
	return c.EntrySink.Write(e)
}
