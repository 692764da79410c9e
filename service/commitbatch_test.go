package service_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/projections/memmodel"
	"github.com/stacksync-es/syncservice/service"
)

// The tests of a hot workspace (commits queued in the process, decided in turn and
// appended together) run on both stores: the memstore and the PostgreSQL store.
var hotStores = []struct {
	name string
	open func(t *testing.T) (eventstore.Store, service.ReadModel)
}{
	{"memstore", func(t *testing.T) (eventstore.Store, service.ReadModel) {
		st := memstore.New()
		t.Cleanup(func() { st.Close() })
		return st, memmodel.New(st)
	}},
	{"postgres", func(t *testing.T) (eventstore.Store, service.ReadModel) {
		e := newEnv(t)
		return e.store, e.q
	}},
}

func forHotStores(t *testing.T, test func(t *testing.T, h *hot)) {
	for _, st := range hotStores {
		t.Run(st.name, func(t *testing.T) {
			store, reads := st.open(t)
			test(t, newHot(t, store, reads))
		})
	}
}

// gatedStore holds the appends to one stream while armed: each waits for a token on pass
// (close pass to let all through). It records the appends to that stream.
type gatedStore struct {
	eventstore.Store
	stream  string
	armed   atomic.Bool
	entered atomic.Int64
	pass    chan struct{}
	opened  sync.Once
	// lieAt, if > 0, is the number of the append (counted from arming) whose outcome is
	// lost: it is stored, and a transient error is returned.
	lieAt atomic.Int64

	mu      sync.Mutex
	records []int // records per append that wrote, in order
	bytes   []int // event data per append that wrote
	wrong   int   // appends refused on the expected version
}

func (g *gatedStore) gate(stream string) int64 {
	if stream != g.stream || !g.armed.Load() {
		return 0
	}
	n := g.entered.Add(1)
	<-g.pass
	return n
}

func (g *gatedStore) note(recs []eventstore.Record, n int64, err error) error {
	if n == 0 {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case errors.Is(err, eventstore.ErrWrongVersion):
		g.wrong++
	case err == nil:
		size := 0
		for _, r := range recs {
			size += len(r.Data)
		}
		g.records, g.bytes = append(g.records, len(recs)), append(g.bytes, size)
		if n == g.lieAt.Load() {
			return eventstore.TransientError(errors.New("connection lost after commit (test)"))
		}
	}
	return err
}

func (g *gatedStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, recs ...eventstore.Record) (eventstore.AppendResult, error) {
	n := g.gate(stream)
	res, err := g.Store.Append(ctx, stream, expected, recs...)
	return res, g.note(recs, n, err)
}

func (g *gatedStore) AppendBatch(ctx context.Context, appends []eventstore.StreamAppend) []eventstore.BatchResult {
	var n int64
	for _, a := range appends {
		n = max(n, g.gate(a.Stream))
	}
	res := g.Store.(eventstore.BatchAppender).AppendBatch(ctx, appends)
	for i, a := range appends {
		if a.Stream == g.stream {
			res[i].Err = g.note(a.Records, n, res[i].Err)
		}
	}
	return res
}

func (g *gatedStore) appended() (records, bytes []int, wrong int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.records...), append([]int(nil), g.bytes...), g.wrong
}

// ctxIDs hands out item ids that a request's context names (idBase), so that the same
// request decided again, one by one, gets the same ids; others get ids from 1,000,000.
type ctxIDs struct{ next atomic.Int64 }

type idBase struct{}

func (c *ctxIDs) Take(ctx context.Context, n int) ([]domain.ItemID, error) {
	from, ok := ctx.Value(idBase{}).(int64)
	if !ok {
		from = 1_000_000 + c.next.Add(int64(n)) - int64(n)
	}
	ids := make([]domain.ItemID, n)
	for i := range ids {
		ids[i] = domain.ItemID(from + int64(i))
	}
	return ids, nil
}

func withIDs(ctx context.Context, from int64) context.Context {
	return context.WithValue(ctx, idBase{}, from)
}

// hot is one test's fixture: a user with a device, their personal workspace holding one
// file, and a service over a gated store.
type hot struct {
	t     *testing.T
	store eventstore.Store // the store itself, not gated
	reads service.ReadModel
	ids   *ctxIDs
	gate  *gatedStore
	s     *service.Service // over gate
	user  uuid.UUID
	ws    uuid.UUID
	dev   uuid.UUID
	file  domain.ItemMetadata // "f.txt", version 1
	// stranger has a device but is not a member of ws.
	stranger, strangerDev uuid.UUID
	base                  int64 // the workspace's version once set up
}

var hotNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func newHot(t *testing.T, store eventstore.Store, reads service.ReadModel) *hot {
	ctx := context.Background()
	h := &hot{t: t, store: store, reads: reads, ids: &ctxIDs{}, gate: &gatedStore{Store: store, pass: make(chan struct{})}}
	h.s = h.service(h.gate, nil)
	var err error
	if h.user, h.ws, err = h.s.CreateUser(ctx, service.NewUser{Name: "hot", Email: "hot@example.com"}); err != nil {
		t.Fatal(err)
	}
	dev, err := h.s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: h.user, Name: "laptop", OS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	h.dev = dev.ID
	if h.stranger, _, err = h.s.CreateUser(ctx, service.NewUser{Name: "stranger", Email: "stranger@example.com"}); err != nil {
		t.Fatal(err)
	}
	sdev, err := h.s.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "reg", UserID: h.stranger, Name: "phone", OS: "ios"})
	if err != nil {
		t.Fatal(err)
	}
	h.strangerDev = sdev.ID
	testenv.Eventually(t, 10*time.Second, func() error { _, err := h.s.Workspaces(ctx, h.user); return err })
	res, err := h.s.Commit(ctx, h.req("base", file(-1, "f.txt", nil, 5)))
	if err != nil {
		t.Fatal(err)
	}
	h.file, h.base = *res.Event.Items[0].Metadata, res.Event.WorkspaceVersion
	h.gate.stream = domain.WorkspaceStream(h.ws)
	t.Cleanup(func() { h.open() })
	return h
}

// service makes a Service over store; tune, if set, changes its config.
func (h *hot) service(store eventstore.Store, tune func(*service.Config)) *service.Service {
	cfg := service.DefaultConfig()
	cfg.Now = func() time.Time { return hotNow }
	if tune != nil {
		tune(&cfg)
	}
	s, err := service.New(cfg, store, h.reads, h.ids)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *hot) req(rid string, items ...domain.ItemMetadata) protocol.CommitRequest {
	return protocol.CommitRequest{RequestID: rid, UserID: h.user, WorkspaceID: h.ws, DeviceID: h.dev, Items: items}
}

// change is a new version of f.txt on top of version 1.
func (h *hot) change(size int64) domain.ItemMetadata {
	m := h.file.Clone()
	m.TempID, m.Version, m.Status, m.Size = nil, 2, domain.StatusChanged, size
	return m
}

type commitOut struct {
	res service.CommitResult
	err error
}

// commitAsync commits req through s in a goroutine.
func commitAsync(ctx context.Context, s *service.Service, req protocol.CommitRequest) <-chan commitOut {
	out := make(chan commitOut, 1)
	go func() {
		res, err := s.Commit(ctx, req)
		out <- commitOut{res, err}
	}()
	return out
}

// holdLead arms the gate and commits a lead request whose append the gate holds: the
// commits that follow queue behind it.
func (h *hot) holdLead() <-chan commitOut {
	h.gate.armed.Store(true)
	lead := commitAsync(withIDs(context.Background(), 900_000), h.s, h.req("lead", file(-2, "lead.txt", nil, 1)))
	h.waitEntered(1)
	return lead
}

func (h *hot) waitEntered(n int64) {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, func() error {
		if got := h.gate.entered.Load(); got < n {
			return fmt.Errorf("%d appends at the gate, want %d", got, n)
		}
		return nil
	})
}

func (h *hot) waitQueued(s *service.Service, n int) {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, func() error {
		if got := s.WaitingCommits(h.ws); got != n {
			return fmt.Errorf("%d commits waiting, want %d", got, n)
		}
		return nil
	})
}

func (h *hot) letOne() { h.gate.pass <- struct{}{} }

// open lets every append through, now and later.
func (h *hot) open() { h.gate.opened.Do(func() { close(h.gate.pass) }) }

func recv(t *testing.T, what string, c <-chan commitOut) commitOut {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer", what)
		return commitOut{}
	}
}

// checkStream checks the workspace's stream after the fixture's base commit: versions
// base+1.. gap-free, one event per requestId, and the request ids in order as want.
func (h *hot) checkStream(want []string) {
	h.t.Helper()
	recs, err := h.store.ReadStream(context.Background(), domain.WorkspaceStream(h.ws), 1, 100_000)
	if err != nil {
		h.t.Fatal(err)
	}
	var got []string
	seen := map[string]bool{}
	next := h.base + 1
	for _, r := range recs {
		ev, err := domain.Decode(r.Type, r.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		c, ok := ev.(domain.Committed)
		if !ok || c.WorkspaceVersion <= h.base {
			continue
		}
		if c.WorkspaceVersion != next || seen[c.RequestID] {
			h.t.Fatalf("event %q at workspace version %d, want version %d and a requestId not seen before", c.RequestID, c.WorkspaceVersion, next)
		}
		seen[c.RequestID] = true
		got = append(got, c.RequestID)
		next++
	}
	if want != nil && !reflect.DeepEqual(got, want) {
		h.t.Fatalf("stream holds %q, want %q", got, want)
	}
}

// checkSequential is the property: every commit event of the stream is exactly what
// deciding its request alone, on the state of the events before it, gives. So the
// workspace's state equals that of the same commits applied one by one in version
// order. reqs holds the requests by requestId (the context's idBase is the request's
// index × 1,000, as the tests give it).
func (h *hot) checkSequential(reqs map[string]hotReq) {
	h.t.Helper()
	recs, err := h.store.ReadStream(context.Background(), domain.WorkspaceStream(h.ws), 1, 100_000)
	if err != nil {
		h.t.Fatal(err)
	}
	w, prev := domain.NewWorkspace(h.ws), ""
	checked := 0
	for _, r := range recs {
		ev, err := domain.Decode(r.Type, r.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		if c, ok := ev.(domain.Committed); ok && reqs[c.RequestID].req.RequestID != "" {
			q := reqs[c.RequestID]
			fresh := 0
			for _, it := range q.req.Items {
				if it.ID == nil {
					fresh++
				}
			}
			ids, _ := h.ids.Take(withIDs(context.Background(), q.ids), fresh)
			d, err := w.Decide(domain.Commit{RequestID: q.req.RequestID, WorkspaceID: h.ws, UserID: h.user, DeviceID: h.dev,
				Items: q.req.Items, At: hotNow, NewItemIDs: ids, Limits: service.DefaultConfig().Limits, PrevHash: prev})
			if err != nil || len(d.Events) != 1 || !reflect.DeepEqual(d.Events[0], ev) {
				h.t.Fatalf("%q decided alone on the events before it: %+v, %v\nstored: %+v", c.RequestID, d, err, ev)
			}
			checked++
		}
		w.Evolve(ev)
		prev = domain.ChainHash(r.Type, r.Data)
	}
	if checked == 0 {
		h.t.Fatal("no event checked")
	}
}

type hotReq struct {
	req protocol.CommitRequest
	ids int64 // idBase of the request's context
}

// N commits queued behind one in flight are decided in turn and appended as one append:
// versions gap-free, each caller gets its own event and items, a requestId repeated
// inside the batch answers the one event, refused commands in the middle append
// nothing and disturb no other, and the result is that of the commits one by one.
func TestHotWorkspaceBatch(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		lead := h.holdLead()
		const n = 24
		reqs := map[string]hotReq{}
		outs := make([]<-chan commitOut, n)
		sent := make([]protocol.CommitRequest, n)
		for i := range n {
			var r protocol.CommitRequest
			switch i % 4 {
			case 0: // all change f.txt from version 1: the first in version order wins
				r = h.req(fmt.Sprintf("chg-%d", i), h.change(int64(100+i)))
			case 1:
				r = h.req(fmt.Sprintf("new-%d", i), file(int64(-100-i), fmt.Sprintf("new-%d.txt", i), nil, int64(i)))
			case 2: // a repeat of the one before, inside the same batch
				r = sent[i-1]
			case 3: // refused: a requestId over 128 characters, or a user not a member
				r = h.req(strings.Repeat("x", 129+i), file(int64(-100-i), "never.txt", nil, 1))
				if i%8 == 7 {
					r = h.req(fmt.Sprintf("stranger-%d", i), file(int64(-100-i), "never.txt", nil, 1))
					r.UserID, r.DeviceID = h.stranger, h.strangerDev
				}
			}
			sent[i] = r
			base := int64(i+1) * 1000
			if i%4 == 2 {
				base -= 1000 // a repeat carries the same ids as the original
			}
			if i%4 != 3 {
				reqs[r.RequestID] = hotReq{r, base}
			}
			outs[i] = commitAsync(withIDs(context.Background(), base), h.s, r)
			h.waitQueued(h.s, i+1) // queued in this order
		}
		h.open()
		if o := recv(t, "lead", lead); o.err != nil || o.res.Event.WorkspaceVersion != h.base+1 {
			t.Fatalf("lead: %+v, %v", o.res.Event, o.err)
		}
		got := make([]commitOut, n)
		winners := 0
		for i := range n {
			got[i] = recv(t, sent[i].RequestID, outs[i])
			o := got[i]
			if i%4 == 3 {
				if i%8 == 7 && !errors.Is(o.err, protocol.ErrUnauthorized) || i%8 == 3 && !errors.Is(o.err, protocol.ErrInvalid) {
					t.Fatalf("commit %d (refused): %v", i, o.err)
				}
				continue
			}
			if o.err != nil || o.res.Event.RequestID != sent[i].RequestID {
				t.Fatalf("commit %d (%q): %+v, %v", i, sent[i].RequestID, o.res.Event, o.err)
			}
			it := o.res.Event.Items[0]
			switch i % 4 {
			case 0:
				if it.Succeeded {
					winners++
				} else if it.Reason != domain.ReasonWrongVersion || it.Metadata.Size != 100 {
					t.Fatalf("loser %d: %+v, want wrongVersion against chg-0's version", i, it)
				}
			case 1:
				if !it.Succeeded || it.Metadata.Filename != sent[i].Items[0].Filename || o.res.Replayed {
					t.Fatalf("commit %d: %+v replayed %v", i, it, o.res.Replayed)
				}
			case 2:
				orig := got[i-1].res
				if !o.res.Replayed || o.res.EventID != orig.EventID || !reflect.DeepEqual(o.res.Event, orig.Event) {
					t.Fatalf("repeat %d: %+v, want a replay of %+v", i, o.res, orig)
				}
			}
		}
		if winners != 1 {
			t.Fatalf("%d changes of f.txt version 1 won", winners)
		}
		want := []string{"lead"}
		for i := range n {
			if i%4 < 2 {
				want = append(want, sent[i].RequestID)
			}
		}
		// A commit after the batch is decided on the state the batch left, without a
		// conflict (the batch's events are in the cached state and its chain hash).
		after := h.req("after", h.change(1))
		after.Items[0].Version = 3
		reqs["after"] = hotReq{after, 800_000}
		if res, err := h.s.Commit(withIDs(context.Background(), 800_000), after); err != nil || !res.Event.Items[0].Succeeded {
			t.Fatalf("commit after the batch: %+v, %v", res.Event, err)
		}
		want = append(want, "after")
		h.checkStream(want)
		records, _, wrong := h.gate.appended()
		if !reflect.DeepEqual(records, []int{1, len(want) - 2, 1}) || wrong != 0 {
			t.Fatalf("appends of %v records, %d refused on the version; want the lead alone, one of %d, one, and no refusal",
				records, wrong, len(want)-2)
		}
		h.checkSequential(reqs)
	})
}

// A second Service (another process) appends while a batch's append is on its way: the
// batch is refused on the expected version, caught up and decided again, so that every
// commit of it sees the other process's commit.
func TestHotWorkspaceConflictMidBatch(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		other := h.service(h.store, nil)
		lead := h.holdLead()
		const n = 8
		reqs := map[string]hotReq{}
		outs := make([]<-chan commitOut, n)
		for i := range n {
			r := h.req(fmt.Sprintf("c-%d", i), h.change(int64(100+i)), file(int64(-100-i), fmt.Sprintf("n-%d.txt", i), nil, 1))
			reqs[r.RequestID] = hotReq{r, int64(i+1) * 1000}
			outs[i] = commitAsync(withIDs(context.Background(), int64(i+1)*1000), h.s, r)
			h.waitQueued(h.s, i+1)
		}
		h.letOne()       // the lead's append
		h.waitEntered(2) // the batch's, decided on the state after the lead
		r := h.req("elsewhere", h.change(7))
		reqs[r.RequestID] = hotReq{r, 500_000}
		res, err := other.Commit(withIDs(context.Background(), 500_000), r)
		if err != nil || !res.Event.Items[0].Succeeded || res.Event.WorkspaceVersion != h.base+2 {
			t.Fatalf("the other process's commit: %+v, %v", res.Event, err)
		}
		h.open()
		if o := recv(t, "lead", lead); o.err != nil {
			t.Fatal(o.err)
		}
		for i := range n {
			o := recv(t, fmt.Sprint("c-", i), outs[i])
			if o.err != nil || o.res.Event.RequestID != fmt.Sprintf("c-%d", i) {
				t.Fatalf("commit %d: %+v, %v", i, o.res.Event, o.err)
			}
			chg, added := o.res.Event.Items[0], o.res.Event.Items[1]
			if chg.Succeeded || chg.Reason != domain.ReasonWrongVersion || chg.Metadata.Size != 7 || !added.Succeeded {
				t.Fatalf("commit %d decided without the other process's commit: %+v / %+v", i, chg, added)
			}
		}
		_, _, wrong := h.gate.appended()
		if wrong == 0 {
			t.Fatal("no append was refused on its expected version: the conflict never happened")
		}
		h.checkStream([]string{"lead", "elsewhere", "c-0", "c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7"})
		h.checkSequential(reqs)
	})
}

// A caller that gives up while its commit waits has nothing written; one that gives up
// while its commit's batch is being appended has it written once (a retry replays it);
// neither loses or repeats another caller's commit.
func TestHotWorkspaceCallerGivesUp(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		lead := h.holdLead()
		ctxs := make([]context.Context, 4)
		cancels := make([]context.CancelFunc, 4)
		outs := make([]<-chan commitOut, 4)
		for i := range 4 {
			ctxs[i], cancels[i] = context.WithCancel(context.Background())
			defer cancels[i]()
			outs[i] = commitAsync(ctxs[i], h.s, h.req(fmt.Sprintf("c-%d", i), file(int64(-100-i), fmt.Sprintf("n-%d.txt", i), nil, 1)))
			h.waitQueued(h.s, i+1)
		}
		cancels[1]() // while waiting
		if o := recv(t, "c-1", outs[1]); !errors.Is(o.err, context.Canceled) {
			t.Fatalf("c-1, given up while waiting: %+v, %v", o.res, o.err)
		}
		h.waitQueued(h.s, 3)
		h.letOne()
		h.waitEntered(2) // the batch of c-0, c-2, c-3 is being appended
		cancels[3]()
		if o := recv(t, "c-3", outs[3]); !errors.Is(o.err, context.Canceled) {
			t.Fatalf("c-3, given up while appended: %+v, %v", o.res, o.err)
		}
		h.open()
		if o := recv(t, "lead", lead); o.err != nil {
			t.Fatal(o.err)
		}
		for _, i := range []int{0, 2} {
			if o := recv(t, fmt.Sprint("c-", i), outs[i]); o.err != nil || o.res.Event.RequestID != fmt.Sprint("c-", i) {
				t.Fatalf("c-%d: %+v, %v", i, o.res.Event, o.err)
			}
		}
		h.checkStream([]string{"lead", "c-0", "c-2", "c-3"})
		again, err := h.s.Commit(context.Background(), h.req("c-3", file(-103, "n-3.txt", nil, 1)))
		if err != nil || !again.Replayed || again.Event.WorkspaceVersion != h.base+4 {
			t.Fatalf("c-3 retried: %+v, %v; want a replay of version %d", again.Event, err, h.base+4)
		}
	})
}

// An append whose outcome is lost (stored, but a transient error came back): the batch
// is decided again on the stream as stored, where its commits are replays; each caller
// still gets its own event, and nothing is stored twice.
func TestHotWorkspaceLostOutcome(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		h.gate.lieAt.Store(2)
		lead := h.holdLead()
		const n = 6
		outs := make([]<-chan commitOut, n)
		want := []string{"lead"}
		for i := range n {
			rid := fmt.Sprintf("c-%d", i)
			want = append(want, rid)
			outs[i] = commitAsync(context.Background(), h.s, h.req(rid, file(int64(-100-i), rid+".txt", nil, 1)))
			h.waitQueued(h.s, i+1)
		}
		h.open()
		if o := recv(t, "lead", lead); o.err != nil {
			t.Fatal(o.err)
		}
		for i := range n {
			o := recv(t, fmt.Sprint("c-", i), outs[i])
			if o.err != nil || o.res.Event.RequestID != fmt.Sprint("c-", i) || o.res.Event.Items[0].Metadata.Filename != fmt.Sprintf("c-%d.txt", i) {
				t.Fatalf("c-%d: %+v, %v", i, o.res.Event, o.err)
			}
		}
		h.checkStream(want)
		if records, _, _ := h.gate.appended(); !reflect.DeepEqual(records, []int{1, n}) {
			t.Fatalf("appends of %v records, want [1 %d]", records, n)
		}
	})
}

// A batch never exceeds MaxCommitBatch commands, nor maxBatchBytes (4 MiB) of event
// data unless a single event takes more: more waiting commits are split over appends.
func TestHotWorkspaceBatchBounds(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		h.s = h.service(h.gate, func(c *service.Config) { c.MaxCommitBatch = 3 })
		lead := h.holdLead()
		chunks := make([]string, 6000) // about 1.5 MB of event data per commit
		for i := range chunks {
			chunks[i] = fmt.Sprintf("%0250d", i)
		}
		var outs []<-chan commitOut
		want := []string{"lead"}
		for i := range 10 {
			it := file(int64(-100-i), fmt.Sprintf("n-%d.txt", i), nil, 1)
			if i >= 4 {
				it.Chunks = chunks
			}
			rid := fmt.Sprint("c-", i)
			want = append(want, rid)
			outs = append(outs, commitAsync(context.Background(), h.s, h.req(rid, it)))
			h.waitQueued(h.s, i+1)
		}
		h.open()
		if o := recv(t, "lead", lead); o.err != nil {
			t.Fatal(o.err)
		}
		for i, c := range outs {
			if o := recv(t, fmt.Sprint("c-", i), c); o.err != nil {
				t.Fatalf("c-%d: %v", i, o.err)
			}
		}
		h.checkStream(want)
		records, bytes, _ := h.gate.appended()
		// The lead; 3 small ones; 1 small and 2 large (1.5 MB each); then the large ones
		// two by two, as a third would take the append past 4 MiB.
		if !reflect.DeepEqual(records, []int{1, 3, 3, 2, 2}) {
			t.Fatalf("appends of %v records (%v bytes), want [1 3 3 2 2]", records, bytes)
		}
		for i, b := range bytes {
			if b > eventstore.MaxRecordSize {
				t.Fatalf("append %d holds %d bytes of events, over %d", i, b, eventstore.MaxRecordSize)
			}
		}
	})
}

// A caller that gives up after its commit was taken into a batch but before the batch
// was decided (here the batch waits for another command on the workspace) has nothing
// written, and the commits after it are served.
func TestHotWorkspaceCallerGivesUpBeforeDecision(t *testing.T) {
	forHotStores(t, func(t *testing.T, h *hot) {
		h.gate.armed.Store(true)
		update := make(chan error, 1)
		go func() {
			update <- h.s.UpdateWorkspace(context.Background(), protocol.UpdateWorkspaceRequest{RequestID: "u", UserID: h.user, WorkspaceID: h.ws, Name: "renamed"})
		}()
		h.waitEntered(1) // the update holds the workspace while its append is held
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := commitAsync(ctx, h.s, h.req("c-0", file(-100, "n-0.txt", nil, 1)))
		testenv.Eventually(t, 10*time.Second, func() error {
			if !h.s.RunningCommits(h.ws) || h.s.WaitingCommits(h.ws) != 0 {
				return errors.New("c-0 not taken into a batch yet")
			}
			return nil
		})
		cancel()
		second := commitAsync(context.Background(), h.s, h.req("c-1", file(-101, "n-1.txt", nil, 1)))
		h.waitQueued(h.s, 1)
		h.open()
		if err := <-update; err != nil {
			t.Fatal(err)
		}
		if o := recv(t, "c-0", first); !errors.Is(o.err, context.Canceled) {
			t.Fatalf("c-0: %+v, %v; want canceled", o.res.Event, o.err)
		}
		if o := recv(t, "c-1", second); o.err != nil {
			t.Fatalf("c-1: %v", o.err)
		}
		h.checkStream([]string{"c-1"})
	})
}
