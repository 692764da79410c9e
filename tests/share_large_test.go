package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// A folder whose history exceeds one event (4 MiB) is shared through syncd on the
// PostgreSQL store: its move is split in parts of one atomic append, and devices see it
// as for any share (one movedOut on W, one movedIn on S with every item, the
// proposals), getChanges of both workspaces is right, and the read models and the
// audit verify. Afterwards docs stays alice's mount point in W: a new file under it is
// refused (parentNotFolder), deleting it is refused (invalidItem), renaming it is not.
func TestShareLargeFolder(t *testing.T) {
	cast := newShareCast(t)
	s, bob, a1, a2, b1 := cast.s, cast.bob, cast.a1, cast.a2, cast.b1
	dA1, inA2, inB1, w := cast.dA1, cast.inA2, cast.inB1, cast.alice.workspace

	a1.commit(w, dA1, "tree", itemJSON(-1, "docs", true, nil, 0), itemJSON(-2, "keep.txt", false, nil, 1))
	tree := inA2.commitOf("tree")
	docs, keep := *tree.Items[0].Metadata.ID, *tree.Items[1].Metadata.ID
	// Three commits of 4,000 files with long names: about 7 MB of history below docs.
	const commits, perCommit = 3, 4000
	long := strings.Repeat("n", 150)
	for c := range commits {
		var items []map[string]any
		for i := range perCommit {
			items = append(items, itemJSON(int64(-10-c*perCommit-i), fmt.Sprintf("%s-%d-%d", long, c, i), false, &docs, int64(i)))
		}
		a1.commit(w, dA1, fmt.Sprintf("bulk-%d", c), items...)
		if n := inA2.commitOf(fmt.Sprintf("bulk-%d", c)); len(n.Items) != perCommit || !n.Items[0].CommitSucceed {
			t.Fatalf("bulk commit %d: %d items", c, len(n.Items))
		}
	}

	a1.share("big", docs, bob.email)
	seenA, seenB := inA2.shareEventsAfter(3), inB1.shareEventsAfter(2)
	if seenA.movedOut == nil || seenA.movedIn == nil || seenB.movedIn == nil || seenA.proposal == nil || seenB.proposal == nil {
		t.Fatalf("alice's second device saw %+v, bob's %+v", seenA, seenB)
	}
	moved := sortedCopy(seenA.movedOut.MovedOut.ItemIDs)
	sID := uuid.MustParse(seenA.movedOut.MovedOut.WorkspaceID)
	if len(moved) != commits*perCommit || seenA.movedOut.WorkspaceVersion != 1+commits+1 {
		t.Fatalf("movedOut names %d items at version %d", len(moved), seenA.movedOut.WorkspaceVersion)
	}
	for who, mi := range map[string]*wire.CommitNotification{"alice": seenA.movedIn, "bob": seenB.movedIn} {
		var got []int64
		for _, it := range mi.Items {
			got = append(got, *it.Metadata.ID)
		}
		if slices.Sort(got); mi.WorkspaceVersion != 1 || !slices.Equal(got, moved) {
			t.Fatalf("%s: movedIn at version %d with %d items, want %d", who, mi.WorkspaceVersion, len(got), len(moved))
		}
	}
	outParts, inParts, inBytes := storedParts(t, s, w, sID)
	t.Logf("stored: %d ItemsMovedOut part(s) in W, %d ItemsMovedIn parts in S (%d bytes)", outParts, inParts, inBytes)
	if inParts < 2 || inBytes <= 4<<20 {
		t.Fatalf("the move-in is in %d part(s) of %d bytes: want a history over 4 MiB, split", inParts, inBytes)
	}
	if got := ids(a2.changes(w)); !slices.Equal(got, sortedCopy([]int64{docs, keep})) {
		t.Fatalf("getChanges of W: %v", got)
	}
	if got := ids(b1.changes(sID)); !slices.Equal(got, moved) {
		t.Fatalf("getChanges of S: %d items, want %d", len(got), len(moved))
	}
	if p := b1.changesSince(sID, 0); p.ToVersion != 1 || len(p.Items) != len(moved) || p.HasMore {
		t.Fatalf("getChangesSince(S, 0): to %d, %d items, more %v", p.ToVersion, len(p.Items), p.HasMore)
	}

	// docs is alice's mount point of S now.
	docsMD := tree.Items[0].Metadata
	a1.commit(w, dA1, "under", itemJSON(-99999, "new.txt", false, &docs, 1))
	if n := inA2.commitOf("under"); n.Items[0].CommitSucceed || n.Items[0].Reason != "parentNotFolder" {
		t.Fatalf("a new file under the mount point: %+v", n.Items[0])
	}
	del := nextVersion(*docsMD, "DELETED", 0)
	a1.commit(w, dA1, "delete-docs", del)
	if n := inA2.commitOf("delete-docs"); n.Items[0].CommitSucceed || n.Items[0].Reason != "invalidItem" {
		t.Fatalf("deleting the mount point: %+v", n.Items[0])
	}
	ren := nextVersion(*docsMD, "RENAMED", 0)
	ren["filename"], ren["chunks"], ren["checksum"] = "docs2", []string{}, 0
	a1.commit(w, dA1, "rename-docs", ren)
	if n := inA2.commitOf("rename-docs"); !n.Items[0].CommitSucceed {
		t.Fatalf("renaming the mount point: %+v", n.Items[0])
	}
	verifyHistory(t, s)
}

// shareEventsAfter is shareEvents passing over repeated notifications of earlier
// commits (delivery is at least once), without printing them (they are large here).
func (in *inbox) shareEventsAfter(n int) shareSeen {
	in.t.Helper()
	var s shareSeen
	for got := 0; got < n; {
		ev := in.nextEvent(60 * time.Second)
		switch {
		case ev.method == "notifyCommit" && ev.commit.MovedOut != nil && s.movedOut == nil:
			s.movedOut = &ev.commit
		case ev.method == "notifyCommit" && ev.commit.MovedIn != nil && s.movedIn == nil:
			s.movedIn = &ev.commit
		case ev.method == "notifyShareProposal" && s.proposal == nil:
			s.proposal = &wire.ShareProposal{}
			mustJSON(in.t, ev.param, s.proposal)
		case ev.method == "notifyCommit" && strings.HasPrefix(ev.commit.RequestID, "bulk-"):
			continue
		default:
			in.t.Fatalf("unexpected event during a share: %s (request %q)", ev.method, ev.commit.RequestID)
		}
		got++
	}
	return s
}

// storedParts reads W's and S's streams from the event store and counts the parts of
// their share events, and the bytes of S's.
func storedParts(t *testing.T, s services, w, sID uuid.UUID) (out, in, inBytes int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{DSN: s.dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, ws := range []uuid.UUID{w, sID} {
		recs, err := st.ReadStream(ctx, domain.WorkspaceStream(ws), 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			switch r.Type {
			case domain.TypeItemsMovedOut:
				out++
			case domain.TypeItemsMovedIn:
				in++
				inBytes += len(r.Data)
			}
		}
	}
	return out, in, inBytes
}
