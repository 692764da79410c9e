package domain

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
)

func TestCommitRequestErrors(t *testing.T) {
	mod := func(fn func(*Commit)) Commit { c := cmt(fileA); fn(&c); return c }
	cases := []struct {
		name  string
		given func(h *hist)
		w     func(h *hist) *Workspace // state to decide on; default h.w
		when  Commit
		err   error
	}{
		{name: "commit to a workspace that does not exist is ErrNotFound",
			w: func(*hist) *Workspace { return NewWorkspace(wsID) }, when: cmt(fileA), err: ErrNotFound},
		{name: "commit by a non-member is ErrNotMember", when: mod(func(c *Commit) { c.UserID = stranger }), err: ErrNotMember},
		{name: "commit by a removed member is ErrNotMember",
			given: func(h *hist) { h.do(RemoveMember{WorkspaceID: wsID, UserID: member, At: t0}) },
			when:  mod(func(c *Commit) { c.UserID = member }), err: ErrNotMember},
		{name: "empty requestId is ErrInvalidCommand", when: mod(func(c *Commit) { c.RequestID = "" }), err: ErrInvalidCommand},
		{name: "requestId over 128 characters is ErrInvalidCommand", when: mod(func(c *Commit) { c.RequestID = strings.Repeat("r", 129) }), err: ErrInvalidCommand},
		{name: "requestId not UTF-8 is ErrInvalidCommand", when: mod(func(c *Commit) { c.RequestID = "\xff" }), err: ErrInvalidCommand},
		{name: "nil device is ErrInvalidCommand", when: mod(func(c *Commit) { c.DeviceID = uuid.Nil }), err: ErrInvalidCommand},
		{name: "nil user is ErrInvalidCommand", when: mod(func(c *Commit) { c.UserID = uuid.Nil }), err: ErrInvalidCommand},
		{name: "another workspace's id is ErrInvalidCommand", when: mod(func(c *Commit) { c.WorkspaceID = otherWS }), err: ErrInvalidCommand},
		{name: "no items is ErrInvalidCommand", when: mod(func(c *Commit) { c.Items = nil }), err: ErrInvalidCommand},
		{name: "more than 10,000 items is ErrInvalidCommand", when: mod(func(c *Commit) {
			c.Items = make([]ItemMetadata, DefaultMaxCommitItems+1)
			for i := range c.Items {
				c.Items[i] = at(fileA, 100, 2)
			}
		}), err: ErrInvalidCommand},
		{name: "fewer NewItemIDs than new items is ErrInvalidCommand", when: mod(func(c *Commit) { c.NewItemIDs = nil }), err: ErrInvalidCommand},
		{name: "a NewItemID already in use is ErrInvalidCommand", given: givenFileA,
			when: mod(func(c *Commit) { c.NewItemIDs = []ItemID{100} }), err: ErrInvalidCommand},
		{name: "a repeated NewItemID is ErrInvalidCommand",
			when: mod(func(c *Commit) { c.Items = []ItemMetadata{fileA, folderF}; c.NewItemIDs = []ItemID{7, 7} }), err: ErrInvalidCommand},
		{name: "a NewItemID out of range is ErrInvalidCommand", when: mod(func(c *Commit) { c.NewItemIDs = []ItemID{MaxItemID + 1} }), err: ErrInvalidCommand},
		{name: "a negative quota limit is ErrInvalidCommand", when: mod(func(c *Commit) { c.QuotaLimit = -1 }), err: ErrInvalidCommand},
		{name: "a time beyond year 9999 is ErrInvalidCommand", when: mod(func(c *Commit) { c.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), err: ErrInvalidCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHist(t)
			if tc.given != nil {
				tc.given(h)
			}
			w := h.w
			if tc.w != nil {
				w = tc.w(h)
			}
			_, err := decide(t, w, tc.when)
			wantErr(t, err, tc.err)
		})
	}
}

func TestCommitEventFields(t *testing.T) {
	h := newHist(t)
	h.commit(dev1, fileA)
	c := cmt(folderF)
	c.PrevHash = "abc"
	c.UserID = member
	c.DeviceID = dev2
	c.At = time.Date(2026, 11, 30, 6, 7, 8, 999999999, time.FixedZone("y", -3600))
	e := oneCommitted(t, h.w, c)
	want := Committed{PrevHash: "abc", WorkspaceID: wsID, WorkspaceVersion: 2, RequestID: "req-1", UserID: member, DeviceID: dev2,
		CommittedAt: time.Date(2026, 11, 30, 7, 7, 8, 999000000, time.UTC), LimitQuota: 0, UsedQuota: 10, WorkspaceUsed: 10}
	e.Items = nil
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("event\n%+v\nwant\n%+v", e, want)
	}
	if e.CommittedAt.Location() != time.UTC {
		t.Fatalf("committedAt not UTC")
	}
}

func TestCommitRepeatedRequestIDReplays(t *testing.T) {
	h := newHist(t)
	first := cmt(fileA)
	first.RequestID = "dup"
	oneCommitted(t, h.w, first)
	sv := h.w.StreamVersion() // the Committed event is the 3rd of the stream
	h.commit(dev1, folderF)
	for _, c := range []Commit{first, func() Commit { c := cmt(folderF); c.RequestID = "dup"; return c }(),
		func() Commit { c := first; c.Items = nil; return c }()} {
		d, err := decide(t, h.w, c)
		if err != nil || len(d.Events) != 0 || d.ReplayOf != sv || sv != 3 {
			t.Fatalf("repeat: %+v %v, want ReplayOf %d", d, err, sv)
		}
	}
	// A replay is not granted to a non-member.
	c := first
	c.UserID = stranger
	_, err := decide(t, h.w, c)
	wantErr(t, err, ErrNotMember)
}

func TestTwoDevicesRacingOnNextVersion(t *testing.T) {
	h := newHist(t)
	h.commit(dev1, fileA)
	a := cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 20; m.Checksum = 20 }))
	a.RequestID = "from-dev1"
	b := cmt(next(fileA, 100, StatusChanged, func(m *ItemMetadata) { m.Size = 30; m.Checksum = 30 }))
	b.RequestID, b.DeviceID = "from-dev2", dev2
	// Both were decided against the same state; the store accepts only the first append,
	// so the second is decided again on the state that includes the first.
	if _, err := decide(t, h.w, b); err != nil {
		t.Fatal(err)
	}
	ea := oneCommitted(t, h.w, a)
	eb := oneCommitted(t, h.w, b)
	if !ea.Items[0].Stored || ea.Items[0].Metadata.Size != 20 {
		t.Fatalf("first: %+v", ea.Items[0])
	}
	o := eb.Items[0]
	if o.Succeeded || o.Reason != ReasonWrongVersion || !reflect.DeepEqual(o.Metadata, ea.Items[0].Metadata) {
		t.Fatalf("second: %+v, want wrongVersion with the first's metadata %+v", o, ea.Items[0].Metadata)
	}
	if eb.WorkspaceVersion != 3 {
		t.Fatalf("workspaceVersion %d", eb.WorkspaceVersion)
	}
}

func TestWorkspaceLifecycle(t *testing.T) {
	cases := []struct {
		name  string
		given func(h *hist)
		fresh bool // decide on a workspace not created
		when  WorkspaceCommand
		err   error
		then  Event
	}{
		{name: "CreateWorkspace opens the workspace", fresh: true,
			when: CreateWorkspace{WorkspaceID: wsID, Name: "w", OwnerID: owner, IsShared: true, IsEncrypted: true, At: t0, PrevHash: ""},
			then: WorkspaceCreated{WorkspaceID: wsID, Name: "w", OwnerID: owner, IsShared: true, IsEncrypted: true, At: t0}},
		{name: "CreateWorkspace of an existing workspace is ErrAlreadyExists",
			when: CreateWorkspace{WorkspaceID: wsID, Name: "w", OwnerID: owner, At: t0}, err: ErrAlreadyExists},
		{name: "CreateWorkspace with an invalid name is ErrInvalidCommand", fresh: true,
			when: CreateWorkspace{WorkspaceID: wsID, Name: "a/b", OwnerID: owner, At: t0}, err: ErrInvalidCommand},
		{name: "CreateWorkspace with a nil owner is ErrInvalidCommand", fresh: true,
			when: CreateWorkspace{WorkspaceID: wsID, Name: "w", At: t0}, err: ErrInvalidCommand},
		{name: "CreateWorkspace for another id is ErrInvalidCommand", fresh: true,
			when: CreateWorkspace{WorkspaceID: otherWS, Name: "w", OwnerID: owner, At: t0}, err: ErrInvalidCommand},
		{name: "AddMember adds a member", when: AddMember{WorkspaceID: wsID, UserID: stranger, Name: "theirs", At: t0, PrevHash: "h"},
			then: MemberAdded{PrevHash: "h", WorkspaceID: wsID, UserID: stranger, Name: "theirs", At: t0}},
		{name: "AddMember with no name uses the workspace's", when: AddMember{WorkspaceID: wsID, UserID: stranger, At: t0},
			then: MemberAdded{WorkspaceID: wsID, UserID: stranger, Name: "home", At: t0}},
		{name: "AddMember of a member is ErrAlreadyMember", when: AddMember{WorkspaceID: wsID, UserID: member, At: t0}, err: ErrAlreadyMember},
		{name: "AddMember of the owner is ErrAlreadyMember", when: AddMember{WorkspaceID: wsID, UserID: owner, At: t0}, err: ErrAlreadyMember},
		{name: "AddMember to a workspace not created is ErrNotFound", fresh: true,
			when: AddMember{WorkspaceID: wsID, UserID: member, At: t0}, err: ErrNotFound},
		{name: "RemoveMember removes a member", when: RemoveMember{WorkspaceID: wsID, UserID: member, At: t0},
			then: MemberRemoved{WorkspaceID: wsID, UserID: member, At: t0}},
		{name: "RemoveMember of the owner is ErrOwnerIsMember", when: RemoveMember{WorkspaceID: wsID, UserID: owner, At: t0}, err: ErrOwnerIsMember},
		{name: "RemoveMember of a non-member is ErrNotMember", when: RemoveMember{WorkspaceID: wsID, UserID: stranger, At: t0}, err: ErrNotMember},
		{name: "UpdateMemberWorkspace sets the member's name and mount point",
			when: UpdateMemberWorkspace{RequestID: "u1", WorkspaceID: wsID, UserID: member, Name: "workspace_folder", ParentItemID: iid(77), At: t0},
			then: MemberWorkspaceUpdated{WorkspaceID: wsID, UserID: member, RequestID: "u1", Name: "workspace_folder", ParentItemID: iid(77), At: t0}},
		{name: "UpdateMemberWorkspace with no mount point (scenario 14)",
			when: UpdateMemberWorkspace{RequestID: "u1", WorkspaceID: wsID, UserID: owner, Name: "workspace_folder", At: t0},
			then: MemberWorkspaceUpdated{WorkspaceID: wsID, UserID: owner, RequestID: "u1", Name: "workspace_folder", At: t0}},
		{name: "UpdateMemberWorkspace by a non-member is ErrNotMember",
			when: UpdateMemberWorkspace{RequestID: "u1", WorkspaceID: wsID, UserID: stranger, Name: "x", At: t0}, err: ErrNotMember},
		{name: "UpdateMemberWorkspace with a mount point id of 0 is ErrInvalidCommand",
			when: UpdateMemberWorkspace{RequestID: "u1", WorkspaceID: wsID, UserID: member, Name: "x", ParentItemID: iid(0), At: t0}, err: ErrInvalidCommand},
		{name: "UpdateMemberWorkspace with an invalid name is ErrInvalidCommand",
			when: UpdateMemberWorkspace{RequestID: "u1", WorkspaceID: wsID, UserID: member, Name: "..", At: t0}, err: ErrInvalidCommand},
		{name: "UpdateMemberWorkspace without requestId is ErrInvalidCommand",
			when: UpdateMemberWorkspace{WorkspaceID: wsID, UserID: member, Name: "x", At: t0}, err: ErrInvalidCommand},
		{name: "a command of no known kind is ErrInvalidCommand", when: (*Commit)(nil), err: ErrInvalidCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHist(t)
			if tc.given != nil {
				tc.given(h)
			}
			w := h.w
			if tc.fresh {
				w = NewWorkspace(wsID)
			}
			d, err := decide(t, w, tc.when)
			if tc.err != nil {
				wantErr(t, err, tc.err)
				return
			}
			if err != nil || len(d.Events) != 1 || !reflect.DeepEqual(d.Events[0], tc.then) {
				t.Fatalf("got %+v %v, want %+v", d, err, tc.then)
			}
		})
	}
}

func TestMembership(t *testing.T) {
	h := newHist(t)
	if !h.w.Exists() || h.w.Name() != "home" || h.w.OwnerID() != owner || h.w.IsShared() || h.w.IsEncrypted() {
		t.Fatalf("created state wrong")
	}
	h.do(AddMember{WorkspaceID: wsID, UserID: stranger, Name: "x", At: t0})
	h.do(UpdateMemberWorkspace{RequestID: "r", WorkspaceID: wsID, UserID: member, Name: "mine", ParentItemID: iid(5), At: t0})
	h.do(RemoveMember{WorkspaceID: wsID, UserID: stranger, At: t0})
	want := []Member{{UserID: owner, Name: "home"}, {UserID: member, Name: "mine", ParentItemID: iid(5)}}
	if got := h.w.Members(); !reflect.DeepEqual(got, want) {
		t.Fatalf("members %+v", got)
	}
	if h.w.IsMember(stranger) || !h.w.IsMember(member) {
		t.Fatalf("membership wrong")
	}
	// Repeated requestId: ReplayOf the MemberWorkspaceUpdated event (stream version 4).
	d, err := decide(t, h.w, UpdateMemberWorkspace{RequestID: "r", WorkspaceID: wsID, UserID: member, Name: "other", At: t0})
	if err != nil || d.ReplayOf != 4 || len(d.Events) != 0 {
		t.Fatalf("replay: %+v %v", d, err)
	}
	// A commit requestId is a separate namespace.
	d, err = decide(t, h.w, func() Commit { c := cmt(fileA); c.RequestID = "r"; return c }())
	if err != nil || len(d.Events) != 1 {
		t.Fatalf("commit with an updateWorkspace requestId: %+v %v", d, err)
	}
}

// unknownEvent is an event type the workspace does not know.
type unknownEvent struct{}

func (unknownEvent) EventType() string { return "Unknown.v9" }
func (unknownEvent) Prev() string      { return "" }

func TestEvolveIsTotal(t *testing.T) {
	h := newHist(t)
	h.commit(dev1, fileA)
	before := h.w.Clone()
	badMeta := fileA.Clone()
	badMeta.ID, badMeta.Version = iid(100), 5 // out of sequence
	orphan := fileA.Clone()
	orphan.ID = iid(300)
	orphan.Version = 2
	events := []Event{
		unknownEvent{},
		UserCreated{UserID: owner},
		WorkspaceCreated{WorkspaceID: wsID, Name: "again", OwnerID: stranger},
		MemberAdded{WorkspaceID: otherWS, UserID: stranger},
		MemberRemoved{WorkspaceID: wsID, UserID: owner},
		Committed{WorkspaceID: otherWS, Items: []ItemOutcome{{Succeeded: true, Stored: true, Metadata: &orphan}}},
		(*Committed)(nil),
		&MemberAdded{WorkspaceID: otherWS},
	}
	for _, e := range events {
		h.w.Evolve(e)
	}
	h.w.Evolve(nil)
	if got := h.w.StreamVersion(); got != before.StreamVersion()+uint64(len(events)) {
		t.Fatalf("stream version %d, want %d", got, before.StreamVersion()+uint64(len(events)))
	}
	// Apart from the stream version nothing changed.
	after := h.w.Clone()
	after.streamVersion = before.streamVersion
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("ignored events changed the state")
	}
	// A Committed of this workspace counts as a workspace version even when an item
	// version in it is out of sequence; that version is not stored.
	h.w.Evolve(&Committed{WorkspaceID: wsID, RequestID: "x", Items: []ItemOutcome{
		{Succeeded: true, Stored: true, Metadata: &badMeta}, {Succeeded: true, Stored: true, Metadata: &orphan},
		{Succeeded: true, Stored: true}, {Succeeded: true, Stored: true, Metadata: &ItemMetadata{Version: 1}}}})
	if h.w.Version() != before.Version()+1 || len(h.w.ItemVersions(100)) != 1 || len(h.w.Items()) != 1 {
		t.Fatalf("out-of-sequence version applied: version %d items %d", h.w.Version(), len(h.w.Items()))
	}
}

func TestVersionCountsCommittedEventsOnly(t *testing.T) {
	h := newHist(t) // WorkspaceCreated, MemberAdded
	if h.w.Version() != 0 || h.w.StreamVersion() != 2 {
		t.Fatalf("version %d stream %d", h.w.Version(), h.w.StreamVersion())
	}
	h.commit(dev1, fileA)
	h.do(RemoveMember{WorkspaceID: wsID, UserID: member, At: t0})
	h.commit(dev1, folderF)
	if h.w.Version() != 2 || h.w.StreamVersion() != 5 {
		t.Fatalf("version %d stream %d", h.w.Version(), h.w.StreamVersion())
	}
}

func TestItemsOrder(t *testing.T) {
	h := newHist(t)
	// ids: z-folder 100, a-file 101, sub 102 in 100, c 103 in 102, b 104 in 100, root file 105.
	h.commit(dev1, newFolder(1, nil, "z"), newFile(2, nil, "a", 1), newFolder(3, iid(1), "sub"),
		newFile(4, iid(3), "c", 1), newFile(5, iid(1), "b", 1), newFile(6, nil, "r", 1))
	// Move a (101) into sub (102) and delete b (104): deleted items are listed too.
	h.commit(dev1, next(newFile(2, nil, "a", 1), 101, StatusMoved, func(m *ItemMetadata) { m.ParentID = iid(102) }),
		next(newFile(5, iid(100), "b", 1), 104, StatusDeleted, nil))
	var got []ItemID
	for _, m := range h.w.Items() {
		got = append(got, *m.ID)
	}
	want := []ItemID{100, 102, 101, 103, 104, 105}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Many siblings, created in descending id order: listed by ascending id.
	var files []ItemMetadata
	for i := 0; i < 30; i++ {
		files = append(files, newFile(int64(100+i), nil, fmt.Sprint("s", i), 1))
	}
	c := cmt(files...)
	c.RequestID = "siblings"
	for i := range c.NewItemIDs {
		c.NewItemIDs[i] = ItemID(5000 - i)
	}
	oneCommitted(t, h.w, c)
	var roots []ItemID
	for _, m := range h.w.Items() {
		if m.ParentID == nil {
			roots = append(roots, *m.ID)
		}
	}
	if len(roots) != 32 || !slices.IsSorted(roots) {
		t.Fatalf("root siblings %v", roots)
	}
	if vs := h.w.ItemVersions(101); len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 {
		t.Fatalf("versions %+v", vs)
	}
	if h.w.ItemVersions(999) != nil {
		t.Fatalf("versions of an unknown item")
	}
	if _, ok := h.w.Item(999); ok {
		t.Fatalf("unknown item found")
	}
}

func TestCloneAndAccessorsAreIndependent(t *testing.T) {
	h := newHist(t)
	h.commit(dev1, fileA)
	c := h.w.Clone()
	h.commit(dev1, folderF)
	h.do(UpdateMemberWorkspace{RequestID: "r", WorkspaceID: wsID, UserID: member, Name: "n", ParentItemID: iid(3), At: t0})
	if len(c.Items()) != 1 || c.Version() != 1 || c.Members()[1].ParentItemID != nil {
		t.Fatalf("clone shares state with the original")
	}
	m, _ := h.w.Item(100)
	m.Chunks[0] = "mutated"
	*m.ID = 5
	vs := h.w.ItemVersions(100)
	vs[0].Filename = "mutated"
	if m2, _ := h.w.Item(100); m2.Chunks[0] == "mutated" || *m2.ID != 100 || m2.Filename == "mutated" {
		t.Fatalf("accessor result aliases the state")
	}
	*h.w.Members()[1].ParentItemID = 99
	if *h.w.Members()[1].ParentItemID != 3 {
		t.Fatalf("Members aliases the state")
	}
}

func TestDecidedEventDoesNotAliasState(t *testing.T) {
	h := newHist(t)
	h.commit(dev1, fileA)
	d, err := decide(t, h.w, cmt(at(fileA, 100, 3)))
	if err != nil {
		t.Fatal(err)
	}
	e := d.Events[0].(Committed)
	e.Items[0].Metadata.Chunks[0] = "mutated"
	if m, _ := h.w.Item(100); m.Chunks[0] == "mutated" {
		t.Fatalf("outcome metadata aliases the state")
	}
}

// updateWorkspace requestIds are per member: B reusing A's requestId is a new request.
func TestMemberUpdateRequestIDsArePerMember(t *testing.T) {
	h := newHist(t)
	h.do(UpdateMemberWorkspace{RequestID: "same", WorkspaceID: wsID, UserID: owner, Name: "mine", At: t0})
	d, err := decide(t, h.w, UpdateMemberWorkspace{RequestID: "same", WorkspaceID: wsID, UserID: member, Name: "ours", At: t0})
	if err != nil || len(d.Events) != 1 || d.ReplayOf != 0 {
		t.Fatalf("the member's own request was taken for the owner's: %+v, %v", d, err)
	}
	d, err = decide(t, h.w, UpdateMemberWorkspace{RequestID: "same", WorkspaceID: wsID, UserID: owner, Name: "other", At: t0})
	if err != nil || d.ReplayOf == 0 {
		t.Fatalf("the owner's repeated request was not replayed: %+v, %v", d, err)
	}
}

// Stored versions share one copy of each status and mimetype, whatever copy their
// request brought (a decoded request allocates its own for every item): the decided
// state of a large workspace holds one, not one per item.
func TestStoredVersionsShareStatusAndMimetype(t *testing.T) {
	h := newHist(t)
	fresh := strings.Clone
	a, b := newFile(-1, nil, "a", 1), newFile(-2, nil, "b", 2)
	a.Status, b.Status = Status(fresh("NEW")), Status(fresh("NEW"))
	a.Mimetype, b.Mimetype = fresh("text/plain"), fresh("text/plain")
	h.commit(dev1, a)
	h.commit(dev1, b)
	items := h.w.Items()
	if len(items) != 2 {
		t.Fatalf("%d items", len(items))
	}
	if unsafe.StringData(items[0].Mimetype) != unsafe.StringData(items[1].Mimetype) {
		t.Error("the two stored versions hold a copy of the mimetype each")
	}
	if unsafe.StringData(string(items[0].Status)) != unsafe.StringData(string(items[1].Status)) {
		t.Error("the two stored versions hold a copy of the status each")
	}
}
