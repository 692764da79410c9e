package notify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// A share whose move is split in parts (W: ids 8, 9 | 10; S: 8 v1 | 8 v2, 9 | 10) still
// gives one notifyCommit per workspace, under the first part's id, with the joined move:
// movedOut names every item, movedIn carries each item's latest version once; the later
// parts publish nothing (nor are they set aside), and the notifier's checkpoint passes
// them.
func TestSplitShareNotifications(t *testing.T) {
	e := newEnv(t)
	owner, w, s := uuid.New(), uuid.New(), uuid.New()
	appendEvent(t, e.store, domain.UserStream(owner), domain.UserCreated{UserID: owner, Name: "Olivia", Email: "o@x"})
	appendEvent(t, e.store, domain.WorkspaceStream(w), domain.WorkspaceCreated{WorkspaceID: w, Name: "home", OwnerID: owner})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	version := func(id domain.ItemID, v int64) domain.ItemMetadata {
		return domain.ItemMetadata{ID: &id, Version: v, WorkspaceID: s, Status: domain.StatusNew, Filename: fmt.Sprint(id), Chunks: []string{}, ModifiedAt: at}
	}
	rec := func(ev domain.Event) eventstore.Record {
		typ, data, err := domain.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.Record{ID: uuid.New(), Type: typ, Data: data}
	}
	out := domain.ItemsMovedOut{WorkspaceID: w, WorkspaceVersion: 1, RequestID: "share-1", UserID: owner, At: at, ToWorkspaceID: s, FolderID: 7, Parts: 2}
	out0, out1 := out, out
	out0.ItemIDs, out1.ItemIDs, out1.Part = []domain.ItemID{8, 9}, []domain.ItemID{10}, 1
	in := domain.ItemsMovedIn{WorkspaceID: s, WorkspaceVersion: 1, RequestID: "share-1", UserID: owner, At: at, FromWorkspaceID: w, FolderID: 7, Parts: 3}
	in0, in1, in2 := in, in, in
	in0.Items = []domain.MovedItem{{ID: 8, Versions: []domain.ItemMetadata{version(8, 1)}}}
	in1.Part, in1.Items = 1, []domain.MovedItem{{ID: 8, Versions: []domain.ItemMetadata{version(8, 2)}}, {ID: 9, Versions: []domain.ItemMetadata{version(9, 1)}}}
	in2.Part, in2.Items = 2, []domain.MovedItem{{ID: 10, Versions: []domain.ItemMetadata{version(10, 1)}}}
	wRecs := []eventstore.Record{rec(out0), rec(out1)}
	sRecs := []eventstore.Record{rec(domain.WorkspaceCreated{WorkspaceID: s, Name: "Photos", OwnerID: owner, IsShared: true, At: at}),
		rec(in0), rec(in1), rec(in2)}
	if _, err := e.store.(eventstore.MultiAppender).AppendMulti(ctxT(t), []eventstore.StreamAppend{
		{Stream: domain.WorkspaceStream(w), Expected: eventstore.Any(), Records: wRecs},
		{Stream: domain.WorkspaceStream(s), Expected: eventstore.Any(), Records: sRecs},
	}); err != nil {
		t.Fatal(err)
	}
	end := positionOf(t, e.store, sRecs[3].ID)
	lw, ls, lo := listen(t, e.amqp, w), listen(t, e.amqp, s), listen(t, e.amqp, owner)
	cfg := fastConfig(t, e)
	cfg.Horizon = func(context.Context) (eventstore.Position, error) { return end, nil }
	n := mustNotifier(t, cfg, e.store)
	start(t, n.Run)

	method, p := waitOne(t, lw)
	mo, _ := p["movedOut"].(map[string]any)
	if ids := fmt.Sprint(mo["itemIds"]); method != "notifyCommit" || p["workspaceVersion"] != 1.0 || ids != "[8 9 10]" {
		t.Fatalf("W's notification %s %v", method, p)
	}
	if got := lw.all()[0].MessageId; got != wRecs[0].ID.String() {
		t.Fatalf("W's notification has id %s, want the first part's %s", got, wRecs[0].ID)
	}
	method, p = waitOne(t, ls)
	items, _ := p["items"].([]any)
	var got []string
	for _, it := range items {
		md := it.(map[string]any)["metadata"].(map[string]any)
		got = append(got, fmt.Sprintf("%v@%v", md["id"], md["version"]))
	}
	if method != "notifyCommit" || fmt.Sprint(got) != "[8@2 9@1 10@1]" || ls.all()[0].MessageId != sRecs[1].ID.String() {
		t.Fatalf("S's notification %s %v (items %v)", method, p, got)
	}
	if method, _ := waitOne(t, lo); method != "notifyShareProposal" {
		t.Fatalf("the owner got %s", method)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if st := n.Status(); st.Position.Less(end) {
			return fmt.Errorf("notifier at %v, the share ends at %v", st.Position, end)
		}
		return nil
	})
	if len(lw.all()) != 1 || len(ls.all()) != 1 || len(lo.all()) != 1 {
		t.Fatalf("messages: %d on W, %d on S, %d to the owner; want one each", len(lw.all()), len(ls.all()), len(lo.all()))
	}
	if got := setAsideOf(t, e.dsn, "notifier"); len(got) != 0 {
		t.Fatalf("set aside: %+v", got)
	}
}
