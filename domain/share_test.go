package domain

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var newbie = uuid.MustParse("00000000-0000-4000-8000-0000000000b4")

// shareTree is the personal workspace of owner (created not shared, no other member)
// holding, by id:
//
//	100 F/            (folder to share)
//	101 F/a    (2 versions)
//	102 F/G/
//	103 F/G/b
//	104 c      (at the root, stays)
//	105 F/d    (deleted)
func shareTree(t *testing.T) *hist {
	h := &hist{t: t, w: NewWorkspace(wsID), nextID: 100}
	h.do(CreateWorkspace{WorkspaceID: wsID, Name: "home", OwnerID: owner, At: t0})
	h.commit(dev1, newFolder(-1, nil, "F"), newFile(-2, iid(-1), "a", 10), newFolder(-3, iid(-1), "G"),
		newFile(-4, iid(-3), "b", 20), newFile(-5, nil, "c", 30), newFile(-6, iid(-1), "d", 5))
	a, _ := h.w.Item(101)
	h.commit(dev2, next(a, 101, StatusChanged, func(m *ItemMetadata) { m.Size, m.Checksum = 11, 78 }))
	d, _ := h.w.Item(105)
	h.commit(dev1, next(d, 105, StatusDeleted, func(m *ItemMetadata) { m.Size = 0 }))
	return h
}

// lastHash is the chain hash of the last event of h's stream.
func (h *hist) lastHash() string {
	h.t.Helper()
	return hashOf(h.t, h.events[len(h.events)-1])
}

func hashOf(t *testing.T, e Event) string {
	t.Helper()
	typ, data, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return ChainHash(typ, data)
}

func shareCmd(folder ItemID, members ...uuid.UUID) ShareFolder {
	return ShareFolder{RequestID: "share-1", UserID: owner, SourceID: wsID, FolderID: folder, Members: members,
		At: t0.Add(time.Hour), QuotaLimit: 1000, UsedQuota: 65}
}

// decideShare runs DecideShare and checks that it changed neither state.
func decideShare(t *testing.T, w, target *Workspace, c ShareFolder) (ShareDecision, error) {
	t.Helper()
	wb, tb := w.Clone(), target.Clone()
	d, err := DecideShare(w, target, c)
	if !reflect.DeepEqual(wb, w) || !reflect.DeepEqual(tb, target) {
		t.Fatal("DecideShare changed a state")
	}
	if err != nil && (len(d.Source)+len(d.Target) != 0 || d.ReplayOf != 0) {
		t.Fatalf("DecideShare returned an error with a decision: %+v", d)
	}
	return d, err
}

// checkChain checks that each event carries the chain hash of the one before it, the
// first carrying prev.
func checkChain(t *testing.T, prev string, evs []Event) {
	t.Helper()
	for i, e := range evs {
		if e.Prev() != prev {
			t.Fatalf("event %d (%s) carries prevHash %q, want %q", i, e.EventType(), e.Prev(), prev)
		}
		prev = hashOf(t, e)
	}
}

// fold returns a fresh state of id with evs applied.
func fold(id uuid.UUID, evs []Event) *Workspace {
	w := NewWorkspace(id)
	for _, e := range evs {
		w.Evolve(e)
	}
	return w
}

// share decides c on h's workspace and applies it to both states; it returns the
// decision and the shared workspace's state.
func (h *hist) share(c ShareFolder, target *Workspace) (ShareDecision, *Workspace) {
	h.t.Helper()
	if target == nil {
		target = NewWorkspace(h.w.ShareTarget(c))
	}
	c.SourcePrevHash = h.lastHash()
	d, err := decideShare(h.t, h.w, target, c)
	if err != nil {
		h.t.Fatalf("share: %v", err)
	}
	for _, e := range d.Source {
		h.w.Evolve(e)
		h.events = append(h.events, e)
	}
	for _, e := range d.Target {
		target.Evolve(e)
	}
	return d, target
}

func TestShareMovesTheSubtree(t *testing.T) {
	h := shareTree(t)
	before := h.w.Clone()
	prev := h.lastHash()
	c := shareCmd(100, member, owner, member, stranger)
	c.IsEncrypted = true
	d, s := h.share(c, nil)
	S := SharedWorkspaceID(owner, "share-1")
	if d.TargetID != S || s.ID() != S || !slices.Equal(d.NewMembers, []uuid.UUID{member, stranger}) {
		t.Fatalf("decision target %s, new members %v; want %s, [member stranger]", d.TargetID, d.NewMembers, S)
	}
	moved := []ItemID{101, 102, 103, 105}
	at := c.At

	// The source: one ItemsMovedOut at the next workspaceVersion; F and c stay.
	wantOut := ItemsMovedOut{PrevHash: prev, WorkspaceID: wsID, WorkspaceVersion: before.Version() + 1, RequestID: "share-1",
		UserID: owner, At: at, ToWorkspaceID: S, FolderID: 100, ItemIDs: moved, LimitQuota: 1000, UsedQuota: 65, WorkspaceUsed: 30}
	if len(d.Source) != 1 || !reflect.DeepEqual(d.Source[0], wantOut) {
		t.Fatalf("source events %+v\nwant %+v", d.Source, wantOut)
	}
	var left []ItemID
	for _, m := range h.w.Items() {
		left = append(left, *m.ID)
	}
	if !slices.Equal(left, []ItemID{100, 104}) || h.w.Used() != 30 || h.w.Version() != before.Version()+1 {
		t.Fatalf("source after the move: items %v, used %d, version %d", left, h.w.Used(), h.w.Version())
	}
	if got, ok := h.w.ShareOf(100); !ok || got != S {
		t.Fatalf("ShareOf(F) = %s, %v", got, ok)
	}

	// The target: created shared and encrypted, owned by the caller, named after F.
	checkChain(t, "", d.Target)
	types := make([]string, len(d.Target))
	for i, e := range d.Target {
		types[i] = e.EventType()
	}
	if !slices.Equal(types, []string{TypeWorkspaceCreated, TypeItemsMovedIn, TypeMemberAdded, TypeMemberAdded}) {
		t.Fatalf("target events %v", types)
	}
	if !s.Exists() || !s.IsShared() || !s.IsEncrypted() || s.OwnerID() != owner || s.Name() != "F" || s.Version() != 1 {
		t.Fatalf("shared workspace: exists %v shared %v encrypted %v owner %s name %q version %d",
			s.Exists(), s.IsShared(), s.IsEncrypted(), s.OwnerID(), s.Name(), s.Version())
	}
	in := d.Target[1].(ItemsMovedIn)
	if in.WorkspaceVersion != 1 || in.FromWorkspaceID != wsID || in.FolderID != 100 || in.WorkspaceUsed != 31 || in.RequestID != "share-1" {
		t.Fatalf("ItemsMovedIn header %+v", in)
	}
	wantMembers := []Member{
		{UserID: owner, Name: "F", ParentItemID: iid(100)},
		{UserID: member, Name: "F"},
		{UserID: stranger, Name: "F"},
	}
	if !reflect.DeepEqual(s.Members(), wantMembers) {
		t.Fatalf("members %+v\nwant %+v", s.Members(), wantMembers)
	}
	// Every moved item keeps its id and every version, re-homed: workspace S, and F's
	// children at the root.
	var got []ItemID
	for _, m := range s.Items() {
		got = append(got, *m.ID)
	}
	if !slices.Equal(got, moved) {
		t.Fatalf("shared workspace items %v, want %v", got, moved)
	}
	for _, id := range moved {
		orig, now := before.ItemVersions(id), s.ItemVersions(id)
		if len(now) != len(orig) {
			t.Fatalf("item %d: %d versions moved of %d", id, len(now), len(orig))
		}
		for v := range orig {
			want := orig[v].Clone()
			want.WorkspaceID = S
			if want.ParentID != nil && *want.ParentID == 100 {
				want.ParentID, want.ParentVersion = nil, nil
			}
			if !reflect.DeepEqual(now[v], want) {
				t.Fatalf("item %d version %d:\n%+v\nwant\n%+v", id, v+1, now[v], want)
			}
		}
	}
	if s.Used()+h.w.Used() != before.Used() {
		t.Fatalf("used bytes %d + %d, were %d", s.Used(), h.w.Used(), before.Used())
	}
}

// After a share, the moved items are gone from the source (a commit on one, or a
// retried creation of one, fails with invalidItem and reveals nothing) and live on in
// the shared workspace at their next version.
func TestShareAfterwardsCommits(t *testing.T) {
	h := shareTree(t)
	_, s := h.share(shareCmd(100, member), nil)
	a := s.ItemVersions(101)[1]
	c := cmt(next(a, 101, StatusChanged, func(m *ItemMetadata) { m.Size = 12 }))
	e := oneCommitted(t, h.w, c)
	if o := e.Items[0]; o.Succeeded || o.Reason != ReasonInvalidItem || o.Metadata != nil {
		t.Fatalf("commit on a moved item in the source: %+v", o)
	}
	retry := cmt(newFile(-2, iid(100), "a", 10))
	retry.RequestID = "req-2"
	if o := oneCommitted(t, h.w, retry).Items[0]; o.Succeeded || o.Reason != ReasonInvalidItem {
		t.Fatalf("retried creation of a moved item in the source: %+v", o)
	}
	c.WorkspaceID = s.ID()
	if o := oneCommitted(t, s, c).Items[0]; !o.Succeeded || !o.Stored || o.Metadata.Version != 3 || o.Metadata.ParentID != nil {
		t.Fatalf("commit on a moved item in the shared workspace: %+v", o)
	}
}

func TestShareRepeatedRequestReplays(t *testing.T) {
	h := shareTree(t)
	_, s := h.share(shareCmd(100, member), nil)
	sv := h.w.StreamVersion()
	for _, c := range []ShareFolder{shareCmd(100, member), shareCmd(104, newbie), shareCmd(999, owner)} {
		d, err := decideShare(t, h.w, s, c)
		if err != nil || d.ReplayOf != sv || d.TargetID != s.ID() || len(d.Source)+len(d.Target) != 0 {
			t.Fatalf("repeated share %+v: %+v, %v; want ReplayOf %d of %s", c, d, err, sv, s.ID())
		}
		if h.w.ShareTarget(c) != s.ID() {
			t.Fatalf("ShareTarget of a repeated request: %s, want %s", h.w.ShareTarget(c), s.ID())
		}
	}
}

func TestShareAgainAddsMembersOnly(t *testing.T) {
	h := shareTree(t)
	d, s := h.share(shareCmd(100, member), nil)
	sourceVersion := h.w.StreamVersion()
	again := shareCmd(100, member, newbie)
	again.RequestID = "share-2"
	if h.w.ShareTarget(again) != d.TargetID {
		t.Fatalf("ShareTarget of a shared folder: %s, want %s", h.w.ShareTarget(again), d.TargetID)
	}
	again.TargetPrevHash = hashOf(t, d.Target[len(d.Target)-1])
	d2, err := decideShare(t, h.w, s, again)
	if err != nil {
		t.Fatal(err)
	}
	want := MemberAdded{PrevHash: again.TargetPrevHash, WorkspaceID: s.ID(), UserID: newbie, Name: "F", At: again.At, RequestID: "share-2"}
	if len(d2.Source) != 0 || len(d2.Target) != 1 || !reflect.DeepEqual(d2.Target[0], want) || !slices.Equal(d2.NewMembers, []uuid.UUID{newbie}) {
		t.Fatalf("share again: %+v\nwant only %+v", d2, want)
	}
	s.Evolve(d2.Target[0])
	// The same request again: nothing to append, its members to propose to again
	// (PROTOCOL.md §8: a repeated requestId publishes its notifications again).
	d3, err := decideShare(t, h.w, s, again)
	if err != nil || len(d3.Source)+len(d3.Target) != 0 || d3.TargetID != s.ID() ||
		!reflect.DeepEqual(d3.ReplayMembers, []Member{{UserID: newbie, Name: "F"}}) {
		t.Fatalf("retried re-share: %+v, %v; want ReplayMembers of %s", d3, err, newbie)
	}
	// Another request naming only members: nothing to do, no error, nothing to replay.
	other := again
	other.RequestID = "share-3"
	d4, err := decideShare(t, h.w, s, other)
	if err != nil || len(d4.Source)+len(d4.Target) != 0 || d4.TargetID != s.ID() || d4.ReplayMembers != nil {
		t.Fatalf("share again with members only: %+v, %v", d4, err)
	}
	if h.w.StreamVersion() != sourceVersion {
		t.Fatal("the source changed")
	}
	if _, err := decideShare(t, h.w, NewWorkspace(otherWS), again); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("share again on the state of another workspace: %v", err)
	}
}

func TestShareRefused(t *testing.T) {
	derived := func(c ShareFolder) *Workspace { return NewWorkspace(SharedWorkspaceID(c.UserID, c.RequestID)) }
	mod := func(fn func(*ShareFolder)) ShareFolder { c := shareCmd(100, member); fn(&c); return c }
	cases := []struct {
		name   string
		given  func(h *hist)
		source func(h *hist) *Workspace
		target func(c ShareFolder) *Workspace
		when   ShareFolder
		err    error
		msg    string // if set, the error says it
	}{
		{name: "an empty requestId", when: mod(func(c *ShareFolder) { c.RequestID = "" }), err: ErrInvalidCommand},
		{name: "a nil user", when: mod(func(c *ShareFolder) { c.UserID = uuid.Nil }), err: ErrInvalidCommand},
		{name: "a nil member", when: mod(func(c *ShareFolder) { c.Members = []uuid.UUID{member, uuid.Nil} }), err: ErrInvalidCommand},
		{name: "another workspace's id", when: mod(func(c *ShareFolder) { c.SourceID = otherWS }), err: ErrInvalidCommand},
		{name: "an item id out of range", when: mod(func(c *ShareFolder) { c.FolderID = 0 }), err: ErrInvalidCommand},
		{name: "a time beyond 9999", when: mod(func(c *ShareFolder) { c.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), err: ErrInvalidCommand},
		{name: "a workspace that does not exist", source: func(*hist) *Workspace { return NewWorkspace(wsID) }, when: shareCmd(100, member), err: ErrNotFound},
		{name: "a caller who is not a member", when: mod(func(c *ShareFolder) { c.UserID = stranger }), err: ErrNotMember},
		{name: "a member who is not the owner",
			given: func(h *hist) { h.do(AddMember{WorkspaceID: wsID, UserID: member, At: t0}) },
			when:  mod(func(c *ShareFolder) { c.UserID = member; c.Members = []uuid.UUID{newbie} }), err: ErrInvalidCommand, msg: "not the personal workspace"},
		{name: "a folder of a shared workspace (nested sharing)", source: func(h *hist) *Workspace {
			w := NewWorkspace(wsID)
			for _, e := range h.events {
				if c, ok := e.(WorkspaceCreated); ok {
					c.IsShared = true
					e = c
				}
				w.Evolve(e)
			}
			return w
		}, when: shareCmd(100, member), err: ErrInvalidCommand, msg: "nested sharing"},
		{name: "an unknown item", when: shareCmd(999, member), err: ErrInvalidCommand},
		{name: "a file", when: shareCmd(104, member), err: ErrInvalidCommand, msg: "not a folder"},
		{name: "a deleted folder", msg: "deleted", given: func(h *hist) {
			g, _ := h.w.Item(102)
			b, _ := h.w.Item(103)
			h.commit(dev1, next(b, 103, StatusDeleted, func(m *ItemMetadata) { m.Size = 0 }), next(g, 102, StatusDeleted, nil))
		}, when: shareCmd(102, member), err: ErrInvalidCommand},
		{name: "nobody but the caller", when: shareCmd(100, owner, owner), err: ErrNoMembers},
		{name: "nobody at all", when: shareCmd(100), err: ErrNoMembers},
		{name: "a folder below a mount point (nested sharing)", given: func(h *hist) {
			h.share(shareCmd(100, member), nil)
			h.forge(dev1, newFolder(-9, iid(100), "H"))
		}, when: mod(func(c *ShareFolder) { c.RequestID = "share-2"; c.FolderID = 108 }), err: ErrInvalidCommand, msg: "nested sharing"},
		{name: "a folder holding a mount point (nested sharing)", given: func(h *hist) {
			h.commit(dev1, newFolder(-9, nil, "P"), newFolder(-10, iid(-9), "Q"))
			c := shareCmd(109, member)
			c.RequestID = "share-q"
			h.share(c, nil)
		}, when: mod(func(c *ShareFolder) { c.FolderID = 108 }), err: ErrInvalidCommand, msg: "nested sharing"},
		{name: "a member's mount point (nested sharing)", when: mod(func(c *ShareFolder) { c.MountPoints = []ItemID{999, 100} }),
			err: ErrInvalidCommand, msg: "mounts another workspace"},
		{name: "a folder holding a member's mount point (nested sharing)", when: mod(func(c *ShareFolder) { c.MountPoints = []ItemID{102} }),
			err: ErrInvalidCommand, msg: "mounts another workspace"},
		{name: "the state of another workspace as the target", target: func(ShareFolder) *Workspace { return NewWorkspace(otherWS) },
			when: shareCmd(100, member), err: ErrInvalidCommand},
		{name: "a target that exists already", target: func(c ShareFolder) *Workspace {
			w := derived(c)
			w.Evolve(WorkspaceCreated{WorkspaceID: w.ID(), Name: "x", OwnerID: owner, IsShared: true})
			return w
		}, when: shareCmd(100, member), err: ErrAlreadyExists},
		{name: "events beyond MaxShareBytes", when: mod(func(c *ShareFolder) { c.Limits.MaxShareBytes = 1500 }), err: ErrShareTooLarge, msg: "MaxShareBytes"},
		{name: "a version larger than one event can move", when: mod(func(c *ShareFolder) { c.Limits.MaxEventBytes = 700 }),
			err: ErrShareTooLarge, msg: "more than one event can move"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := shareTree(t)
			if tc.given != nil {
				tc.given(h)
			}
			w := h.w
			if tc.source != nil {
				w = tc.source(h)
			}
			target := derived(tc.when)
			if tc.target != nil {
				target = tc.target(tc.when)
			}
			d, err := decideShare(t, w, target, tc.when)
			if !errors.Is(err, tc.err) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("got %+v, %v; want %v (%q)", d, err, tc.err, tc.msg)
			}
		})
	}
}

// A shared workspace holds at most Limits.MaxMembers members, its owner included: a new
// share or a re-share past it is refused and decides nothing.
func TestShareMembersBounded(t *testing.T) {
	h := shareTree(t)
	c := shareCmd(100, member, newbie)
	c.Limits.MaxMembers = 2
	if _, err := decideShare(t, h.w, NewWorkspace(SharedWorkspaceID(c.UserID, c.RequestID)), c); !errors.Is(err, ErrTooManyMembers) || !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("a share with 3 members under a limit of 2: %v", err)
	}
	c.Members = []uuid.UUID{member}
	d, s := h.share(c, nil)
	again := shareCmd(100, member, newbie)
	again.RequestID, again.Limits.MaxMembers = "share-2", 2
	again.TargetPrevHash = hashOf(t, d.Target[len(d.Target)-1])
	if _, err := decideShare(t, h.w, s, again); !errors.Is(err, ErrTooManyMembers) {
		t.Fatalf("a re-share to 3 members under a limit of 2: %v", err)
	}
	again.Limits.MaxMembers = 3
	if d2, err := decideShare(t, h.w, s, again); err != nil || !slices.Equal(d2.NewMembers, []uuid.UUID{newbie}) {
		t.Fatalf("a re-share to 3 members under a limit of 3: %+v, %v", d2, err)
	}
}

// forge applies a commit that the rules of today would refuse, as a history from before
// them holds it: decided against h's state without its mount points.
func (h *hist) forge(dev uuid.UUID, items ...ItemMetadata) Committed {
	h.t.Helper()
	saved := h.w.shares
	h.w.shares = map[ItemID]uuid.UUID{}
	defer func() { h.w.shares = saved }()
	return h.commit(dev, items...)
}
