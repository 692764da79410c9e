package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestCheckText(t *testing.T) {
	cases := []struct {
		s   string
		max int
		ok  bool
	}{
		{strings.Repeat("a", 255), 255, true},
		{strings.Repeat("a", 256), 255, false},
		{strings.Repeat("é", 127) + "a", 255, true}, // 255 bytes
		{strings.Repeat("é", 128), 255, false},      // 256 bytes
		{"a\x00b", 255, false},
		{"\xff", 255, false},
		{"", 255, true},
	}
	for _, c := range cases {
		err := CheckText("deviceName", c.s, c.max)
		if (err == nil) != c.ok {
			t.Errorf("CheckText(%q, %d) = %v, want ok=%v", c.s, c.max, err, c.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), "deviceName")) {
			t.Errorf("CheckText error %q does not name the field or is not ErrInvalidCommand", err)
		}
	}
	if err := CheckText("deviceName", strings.Repeat("a", 70000), 255); !strings.Contains(err.Error(), "the limit is 255") ||
		len(err.Error()) > 200 {
		t.Errorf("error must name the limit and not echo the value: %.300q", err)
	}
}

// TestUserTextBounds: every text field of the user aggregate's commands at its limit is
// accepted, one byte past it, with NUL or not UTF-8 refused (PROTOCOL.md §3).
func TestUserTextBounds(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	email := func(n int) string { return long(n-len("@example.org")) + "@example.org" }
	create := func(name, mail string) UserCommand {
		return CreateUser{UserID: userB, Name: name, Email: mail, At: t0}
	}
	reg := func(fn func(*RegisterDevice)) UserCommand { c := register(dev2, "reg-2"); fn(&c); return c }
	upd := func(fn func(*UpdateDevice)) UserCommand {
		c := UpdateDevice{RequestID: "u-1", UserID: userA, DeviceID: dev1, Name: "laptop", OS: "linux", At: t0}
		fn(&c)
		return c
	}
	cases := []struct {
		name string
		cmd  UserCommand
		ok   bool
	}{
		{"user name of 255 bytes", create(long(255), "b@example.org"), true},
		{"user name of 256 bytes", create(long(256), "b@example.org"), false},
		{"user name with NUL", create("B\x00b", "b@example.org"), false},
		{"user name not UTF-8", create("B\xffb", "b@example.org"), false},
		{"e-mail of 254 bytes", create("B", email(254)), true},
		{"e-mail of 255 bytes", create("B", email(255)), false},
		{"e-mail with NUL", create("B", "b\x00@example.org"), false},
		{"e-mail without @", create("B", "example.org"), false},
		{"deviceName of 255 bytes", reg(func(c *RegisterDevice) { c.Name = long(255) }), true},
		{"deviceName of 256 bytes", reg(func(c *RegisterDevice) { c.Name = long(256) }), false},
		{"deviceName with NUL", reg(func(c *RegisterDevice) { c.Name = "a\x00" }), false},
		{"os of 256 bytes", reg(func(c *RegisterDevice) { c.OS = long(256) }), false},
		{"os with NUL", reg(func(c *RegisterDevice) { c.OS = "\x00" }), false},
		{"ip of 255 bytes", reg(func(c *RegisterDevice) { c.IP = str(long(255)) }), true},
		{"ip of 256 bytes", reg(func(c *RegisterDevice) { c.IP = str(long(256)) }), false},
		{"ip with NUL", reg(func(c *RegisterDevice) { c.IP = str("10.0.0.1\x00") }), false},
		{"appVersion of 256 bytes", reg(func(c *RegisterDevice) { c.AppVersion = str(long(256)) }), false},
		{"appVersion not UTF-8", reg(func(c *RegisterDevice) { c.AppVersion = str("\xc3") }), false},
		{"requestId with NUL", reg(func(c *RegisterDevice) { c.RequestID = "r\x00" }), false},
		{"update: deviceName of 255 bytes", upd(func(c *UpdateDevice) { c.Name = long(255) }), true},
		{"update: deviceName of 256 bytes", upd(func(c *UpdateDevice) { c.Name = long(256) }), false},
		{"update: os with NUL", upd(func(c *UpdateDevice) { c.OS = "li\x00nux" }), false},
		{"update: ip with NUL", upd(func(c *UpdateDevice) { c.IP = str("\x00") }), false},
		{"update: appVersion of 256 bytes", upd(func(c *UpdateDevice) { c.AppVersion = str(long(256)) }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := givenUser(t, userA, register(dev1, "reg-1"))
			if _, ok := c.cmd.(CreateUser); ok {
				u = NewUser(userB)
			}
			d, err := decideUser(t, u, c.cmd)
			if c.ok && (err != nil || len(d.Events) != 1) {
				t.Fatalf("want accepted, got %v", err)
			}
			if !c.ok {
				wantErr(t, err, ErrInvalidCommand)
			}
		})
	}
}

// TestWorkspaceTextBounds: workspace and member names, and requestIds.
func TestWorkspaceTextBounds(t *testing.T) {
	long := strings.Repeat("w", 255)
	cases := []struct {
		name string
		cmd  func(h *hist) WorkspaceCommand
		ok   bool
	}{
		{"workspace name of 255 bytes", func(*hist) WorkspaceCommand {
			return CreateWorkspace{WorkspaceID: otherWS, Name: long, OwnerID: owner, At: t0}
		}, true},
		{"workspace name of 256 bytes", func(*hist) WorkspaceCommand {
			return CreateWorkspace{WorkspaceID: otherWS, Name: long + "w", OwnerID: owner, At: t0}
		}, false},
		{"workspace name with NUL", func(*hist) WorkspaceCommand {
			return CreateWorkspace{WorkspaceID: otherWS, Name: "a\x00", OwnerID: owner, At: t0}
		}, false},
		{"member name of 256 bytes", func(*hist) WorkspaceCommand {
			return AddMember{WorkspaceID: wsID, UserID: stranger, Name: long + "w", At: t0}
		}, false},
		{"member name with NUL", func(*hist) WorkspaceCommand {
			return AddMember{WorkspaceID: wsID, UserID: stranger, Name: "\x00", At: t0}
		}, false},
		{"updateWorkspace name of 255 bytes", func(*hist) WorkspaceCommand {
			return UpdateMemberWorkspace{RequestID: "u", WorkspaceID: wsID, UserID: member, Name: long, At: t0}
		}, true},
		{"updateWorkspace name of 256 bytes", func(*hist) WorkspaceCommand {
			return UpdateMemberWorkspace{RequestID: "u", WorkspaceID: wsID, UserID: member, Name: long + "w", At: t0}
		}, false},
		{"updateWorkspace requestId with NUL", func(*hist) WorkspaceCommand {
			return UpdateMemberWorkspace{RequestID: "u\x00", WorkspaceID: wsID, UserID: member, Name: "n", At: t0}
		}, false},
		{"updateWorkspace requestId not UTF-8", func(*hist) WorkspaceCommand {
			return UpdateMemberWorkspace{RequestID: "\xff", WorkspaceID: wsID, UserID: member, Name: "n", At: t0}
		}, false},
		{"commit requestId with NUL", func(*hist) WorkspaceCommand {
			c := cmt(fileA)
			c.RequestID = "r\x00"
			return c
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHist(t)
			w := h.w
			cmd := c.cmd(h)
			if cw, ok := cmd.(CreateWorkspace); ok {
				w = NewWorkspace(cw.WorkspaceID)
			}
			d, err := decide(t, w, cmd)
			if c.ok && (err != nil || len(d.Events) != 1) {
				t.Fatalf("want accepted, got %v", err)
			}
			if !c.ok {
				wantErr(t, err, ErrInvalidCommand)
				if strings.Contains(err.Error(), "\x00") {
					t.Errorf("error echoes the value: %q", err)
				}
			}
		})
	}
}

// TestItemTextBounds: an item's text fields out of bounds fail the item, not the request.
func TestItemTextBounds(t *testing.T) {
	long := func(n int) string { return strings.Repeat("m", n) }
	file := func(fn func(*ItemMetadata)) ItemMetadata { m := newFile(1, nil, "a.txt", 10); fn(&m); return m }
	cases := []struct {
		name string
		item ItemMetadata
		want Reason // "" = accepted
	}{
		{"mimetype of 255 bytes", file(func(m *ItemMetadata) { m.Mimetype = long(255) }), ""},
		{"mimetype of 256 bytes", file(func(m *ItemMetadata) { m.Mimetype = long(256) }), ReasonInvalidItem},
		{"mimetype with NUL", file(func(m *ItemMetadata) { m.Mimetype = "text/\x00" }), ReasonInvalidItem},
		{"mimetype not UTF-8", file(func(m *ItemMetadata) { m.Mimetype = "\xfe" }), ReasonInvalidItem},
		{"chunk name of 255 bytes", file(func(m *ItemMetadata) { m.Chunks = []string{long(255)} }), ""},
		{"chunk name of 256 bytes", file(func(m *ItemMetadata) { m.Chunks = []string{long(256)} }), ReasonInvalidItem},
		{"chunk name with NUL", file(func(m *ItemMetadata) { m.Chunks = []string{"c1", "c\x00"} }), ReasonInvalidItem},
		{"filename of 255 bytes", file(func(m *ItemMetadata) { m.Filename = long(255) }), ""},
		{"filename of 256 bytes", file(func(m *ItemMetadata) { m.Filename = long(256) }), ReasonInvalidName},
		{"filename with NUL", file(func(m *ItemMetadata) { m.Filename = "a\x00" }), ReasonInvalidName},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHist(t)
			e := oneCommitted(t, h.w, cmt(c.item, newFile(2, nil, "ok.txt", 1)))
			if got := e.Items[0].Reason; got != c.want || e.Items[0].Succeeded != (c.want == "") {
				t.Fatalf("reason %q, want %q", got, c.want)
			}
			if !e.Items[1].Succeeded {
				t.Fatalf("the other item failed too: %s", e.Items[1].Reason)
			}
		})
	}
}

func registerN(t *testing.T, u *User, n int, lim Limits) {
	t.Helper()
	for i := range n {
		c := register(uuid.New(), fmt.Sprintf("reg-%d", i))
		c.Limits = lim
		d, err := u.Decide(c)
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		u.Evolve(d.Events[0])
	}
}

// TestDeviceCap: a user holds at most MaxDevicesPerUser devices; removing one frees a
// slot; a removed device is unknown afterwards.
func TestDeviceCap(t *testing.T) {
	for _, lim := range []Limits{{}, {MaxDevicesPerUser: 3}} {
		max := lim.WithDefaults().MaxDevicesPerUser
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			u := givenUser(t, userA)
			registerN(t, u, max, lim) // at the limit: every one accepted
			if n := len(u.Devices()); n != max {
				t.Fatalf("%d devices, want %d", n, max)
			}
			over := register(uuid.New(), "one-too-many")
			over.Limits = lim
			_, err := decideUser(t, u, over)
			wantErr(t, err, ErrInvalidCommand)
			for _, want := range []string{fmt.Sprintf("limit is %d devices per user", max), "syncctl device remove"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// A repeated registration still answers its first outcome at the cap.
			replay := register(uuid.New(), "reg-0")
			replay.Limits = lim
			if d, err := decideUser(t, u, replay); err != nil || d.ReplayOf == 0 {
				t.Fatalf("replay at the cap: %+v %v", d, err)
			}

			gone := u.Devices()[0].ID
			d, err := decideUser(t, u, RemoveDevice{UserID: userA, DeviceID: gone, At: t0, PrevHash: "h"})
			if err != nil {
				t.Fatal(err)
			}
			want := DeviceRemoved{PrevHash: "h", UserID: userA, DeviceID: gone, At: t0}
			if d.Events[0] != Event(want) {
				t.Fatalf("event %+v, want %+v", d.Events[0], want)
			}
			u.Evolve(d.Events[0])
			if _, ok := u.Device(gone); ok || len(u.Devices()) != max-1 {
				t.Fatalf("removed device still listed")
			}
			if d, err := decideUser(t, u, over); err != nil || len(d.Events) != 1 {
				t.Fatalf("registration after a removal: %v", err)
			}
			_, err = decideUser(t, u, UpdateDevice{RequestID: "u", UserID: userA, DeviceID: gone, Name: "x", OS: "y", At: t0})
			wantErr(t, err, ErrDeviceNotValid)
			_, err = decideUser(t, u, RemoveDevice{UserID: userA, DeviceID: gone, At: t0})
			wantErr(t, err, ErrDeviceNotValid)
		})
	}
	_, err := decideUser(t, NewUser(userA), RemoveDevice{UserID: userA, DeviceID: dev1, At: t0})
	wantErr(t, err, ErrNotFound)
}

// TestCommitItemLimit: at most MaxCommitItems items per commit request.
func TestCommitItemLimit(t *testing.T) {
	for _, lim := range []Limits{{}, {MaxCommitItems: 5}} {
		max := lim.WithDefaults().MaxCommitItems
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			h := newHist(t)
			h.commit(dev1, fileA)
			mk := func(n int) Commit {
				// Ids of no item: each fails with a small outcome (nil metadata).
				items := make([]ItemMetadata, n)
				for i := range items {
					items[i] = at(fileA, ItemID(5000+i), 2)
				}
				c := cmt(items...)
				c.NewItemIDs = nil
				c.Limits = lim
				return c
			}
			if _, err := decide(t, h.w, mk(max)); err != nil {
				t.Fatalf("%d items: %v", max, err)
			}
			_, err := decide(t, h.w, mk(max+1))
			wantErr(t, err, ErrInvalidCommand)
			if !strings.Contains(err.Error(), fmt.Sprintf("1 to %d per commit", max)) {
				t.Errorf("error %q does not name the limit", err)
			}
		})
	}
}

func chunks(n int, name string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", name, i)
	}
	return out
}

// TestChunksPerItemLimit: at most MaxChunksPerItem chunks, else the item fails.
func TestChunksPerItemLimit(t *testing.T) {
	for _, lim := range []Limits{{}, {MaxChunksPerItem: 3}} {
		max := lim.WithDefaults().MaxChunksPerItem
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			h := newHist(t)
			a, b := newFile(1, nil, "a", 1), newFile(2, nil, "b", 1)
			a.Chunks, b.Chunks = chunks(max, "a"), chunks(max+1, "b")
			c := cmt(a, b)
			c.Limits = lim
			e := oneCommitted(t, h.w, c)
			if !e.Items[0].Succeeded || e.Items[1].Reason != ReasonInvalidItem {
				t.Fatalf("outcomes %v/%s, want accepted and invalidItem", e.Items[0].Succeeded, e.Items[1].Reason)
			}
		})
	}
}

// TestFailedOutcomeOmitsLargeChunkLists: a failed item's outcome carries the current
// version's chunks up to 1,000 of them, and a nil list (JSON null) beyond.
func TestFailedOutcomeOmitsLargeChunkLists(t *testing.T) {
	for _, n := range []int{MaxFailedOutcomeChunks, MaxFailedOutcomeChunks + 1} {
		h := newHist(t)
		f := newFile(1, nil, "big", 1)
		f.Chunks = chunks(n, "c")
		h.commit(dev1, f)
		e := oneCommitted(t, h.w, cmt(at(f, 100, 5))) // wrongVersion
		o := e.Items[0]
		if o.Reason != ReasonWrongVersion || o.Metadata == nil || o.Metadata.Version != 1 {
			t.Fatalf("%d chunks: outcome %+v", n, o)
		}
		_, data, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if n <= MaxFailedOutcomeChunks {
			if len(o.Metadata.Chunks) != n {
				t.Fatalf("%d chunks: outcome holds %d", n, len(o.Metadata.Chunks))
			}
			continue
		}
		if o.Metadata.Chunks != nil || !strings.Contains(string(data), `"chunks":null`) || len(data) > 2000 {
			t.Fatalf("%d chunks: outcome keeps %d chunks; event of %d bytes", n, len(o.Metadata.Chunks), len(data))
		}
		stored, _ := h.w.Item(100)
		if len(stored.Chunks) != n {
			t.Fatalf("the stored version lost its chunks")
		}
		back, err := Decode(TypeCommitted, data)
		if err != nil || back.(Committed).Items[0].Metadata.Chunks != nil {
			t.Fatalf("decoded: %v", err)
		}
	}
}

// TestEventSizeRefusal: a commit whose event would pass MaxEventBytes is refused while
// it is decided, with ErrEventTooLarge (an ErrInvalidCommand), and nothing is recorded.
func TestEventSizeRefusal(t *testing.T) {
	h := newHist(t)
	f := newFile(1, nil, "big", 1)
	f.Chunks = make([]string, MaxFailedOutcomeChunks)
	for i := range f.Chunks {
		f.Chunks[i] = fmt.Sprintf("%0255d", i)
	}
	h.commit(dev1, f)
	// 100 stale references to an item holding 1,000 chunks of 255 bytes: each failed
	// outcome copies ~260 KB, so the event would be ~26 MB; the request is tiny.
	refs := make([]ItemMetadata, 100)
	for i := range refs {
		refs[i] = at(newFile(1, nil, "big", 1), 100, 7)
		refs[i].Chunks = nil
	}
	_, err := decide(t, h.w, cmt(refs...))
	wantErr(t, err, ErrEventTooLarge)
	wantErr(t, err, ErrInvalidCommand)
	if !strings.Contains(err.Error(), "split it") || !strings.Contains(err.Error(), "at item 17 of 100") {
		t.Errorf("error %q: want it refused at item 17 with a split-it message", err)
	}
	// Under the limit (16 of them) it is decided.
	if _, err := decide(t, h.w, cmt(refs[:16]...)); err != nil {
		t.Fatalf("16 references: %v", err)
	}
	// A small configured limit applies the same way.
	c := cmt(newFile(1, nil, "a", 1), newFile(2, nil, "b", 1))
	c.Limits = Limits{MaxEventBytes: 1000}
	_, err = decide(t, h.w, c)
	wantErr(t, err, ErrEventTooLarge)
}

// TestEventSizeEstimate: the estimate is an upper bound of the encoded event, and close.
func TestEventSizeEstimate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := []string{"a", "é", "<&>", "\"\\", "\u2028", "\t\n", "\x01", "日本"}
	text := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(texts[rng.IntN(len(texts))])
		}
		return b.String()
	}
	for run := range 200 {
		h := newHist(t)
		var items []ItemMetadata
		for i := range 1 + rng.IntN(20) {
			f := newFile(int64(i+1), nil, "f"+text(rng.IntN(40)), int64(rng.IntN(1000)))
			f.Mimetype = text(rng.IntN(30))
			f.Chunks = nil
			for range rng.IntN(10) {
				f.Chunks = append(f.Chunks, "c"+text(rng.IntN(30)))
			}
			items = append(items, f)
		}
		c := cmt(items...)
		c.RequestID = "r" + text(rng.IntN(50))
		c.PrevHash = strings.Repeat("f", 64)
		d, err := decide(t, h.w, c)
		if err != nil {
			t.Fatal(err)
		}
		e := d.Events[0].(Committed)
		_, data, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		est := estimateCommitted(&c)
		for i := range e.Items {
			est += estimateOutcome(&e.Items[i])
		}
		if est < len(data) || est > len(data)+100+10*len(e.Items) {
			t.Fatalf("run %d: estimate %d for %d encoded bytes", run, est, len(data))
		}
	}
	var b []byte
	b, _ = json.Marshal("<\u2028\x01\"é")
	if got := jsonStringLen("<\u2028\x01\"é"); got < len(b) {
		t.Fatalf("jsonStringLen %d < %d", got, len(b))
	}
}
