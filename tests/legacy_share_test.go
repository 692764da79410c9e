package tests

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/legacy"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// A StackSync desktop shares a folder (createShareProposal, golden-shaped, async) with a
// user of a JSON device and another legacy user: the share is served by the same
// service.Share as the JSON protocol's. The owner's desktop and the legacy member get
// notifyShareProposal (ShareProposalNotification) on multi#<userId>, the JSON member its
// JSON proposal; the desktop then finds S in getWorkspaces and its items in getChanges,
// as StackSync's desktop reads a new shared workspace. A share of an id that names no
// item changes nothing.
func TestLegacyDesktopShares(t *testing.T) {
	s := newServices(t)
	legacyURL := testenv.AMQPURL(t)
	p := startSyncd(t, s, "-legacy-amqp", legacyURL, "-legacy-swift-url", "http://swift.example/v1/AUTH_x")
	a := addUser(t, s, "Wire")
	b := addUser(t, s, "Json")
	c := addUser(t, s, "Desk")
	bDev := dialRaw(t, userURL(t, s, b), b.id)
	bDevID := bDev.register("json-laptop")
	bInbox := bDev.listen(bDevID)
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := p.logged(regexpLegacyServing)
		return err
	})

	java := dialJava(t, legacyURL, "wirehost")
	devV := java.ok(legacy.MethodUpdateDevice, req(js.ClassUpdateDeviceRequest, uuid.NewString(), &a.id,
		map[string]js.Value{"deviceName": js.Str("wirehost"), "os": js.Str("Linux-amd64")}))
	dev, _, _ := js.AsUUID(devV)
	wsEvents := java.listen(a.workspace)
	userEvents := java.listen(a.id)
	java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, "wirehost-1796000001000", &a.id, map[string]js.Value{
		"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(a.workspace), "items": js.NewArrayList([]js.Value{
			desktopItem(nil, i64(41), nil, 1, "NEW", "photos", true, 0, dev, a.workspace),
			desktopItem(nil, i64(42), i64(41), 1, "NEW", "cat.jpg", false, 123456, dev, a.workspace, "c1")})}))
	n := nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ := js.AsList(n.Get("items"))
	folder := longOf(t, items[0].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	file := longOf(t, items[1].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	other := dialJava(t, legacyURL, "deskhost")
	otherEvents := other.listen(c.id)

	share := func(rid string, item int64, emails ...string) {
		es := make([]js.Value, len(emails))
		for i, e := range emails {
			es[i] = js.Str(e)
		}
		java.call(legacy.MethodCreateShareProposal, true, req(js.ClassShareProposalRequest, rid, &a.id, map[string]js.Value{
			"isEncrypted": false, "emails": js.NewArrayList(es), "itemId": js.NewLong(item)}))
	}
	// An id that names no item: nothing is appended (the request is async: no reply).
	before := streamVersions(t, s, a.workspace)
	share("wirehost-1796000002000", 1<<40, b.email)
	sID := domain.SharedWorkspaceID(a.id, "wirehost-1796000003000")
	share("wirehost-1796000003000", folder, b.email, c.email, "nobody@example.org")

	// The owner's desktop and the legacy member: a Java notifyShareProposal each.
	for who, in := range map[string]*javaEvents{"owner": {userEvents}, "legacy member": {otherEvents}} {
		pr := nextEvent(t, in.ch, legacy.MethodNotifyShareProposal)
		ws, _, _ := js.AsUUID(pr.Get("workspaceId"))
		owner, _, _ := js.AsUUID(pr.Get("ownerId"))
		name, _, _ := js.AsString(pr.Get("folderName"))
		ownerName, _, _ := js.AsString(pr.Get("ownerName"))
		container, _, _ := js.AsString(pr.Get("swiftContainer"))
		url, _, _ := js.AsString(pr.Get("swiftURL"))
		rid, _, _ := js.AsString(pr.Get("requestId"))
		if ws != sID || owner != a.id || name != "photos" || ownerName != "Wire" || longOf(t, pr.Get("itemId")) != folder ||
			container != sID.String() || url != "http://swift.example/v1/AUTH_x" || pr.Get("isEncrypted") != false ||
			rid != "wirehost-1796000003000" {
			t.Fatalf("%s: proposal %s", who, js.Dump(pr))
		}
	}
	// The JSON member: the JSON proposal (and S's movedIn).
	seen := bInbox.shareEvents(2)
	if seen.proposal == nil || seen.proposal.WorkspaceID != sID.String() || seen.proposal.OwnerName != "Wire" ||
		seen.movedIn == nil || !slices.Equal(ids(movedMetadata(seen.movedIn)), []int64{file}) {
		t.Fatalf("JSON member: %+v", seen)
	}
	// The desktop reads S as StackSync's desktop does after a proposal: getWorkspaces lists
	// it (shared, mounted at photos for the owner), getChanges holds the moved file.
	wss, _, _ := js.AsList(java.ok(legacy.MethodGetWorkspaces, req(js.ClassGetWorkspacesRequest, uuid.NewString(), &a.id, nil)))
	var found bool
	for _, w := range wss {
		wo := w.(*js.Object)
		if id, _, _ := js.AsUUID(wo.Get("id")); id == sID {
			parent, _, _ := js.AsObject(wo.Get("parentItem"), js.ClassItem)
			found = wo.Get("isShared") == true && parent != nil && longOf(t, parent.Get("id")) == folder
		}
	}
	if !found || len(wss) != 2 {
		t.Fatalf("getWorkspaces after the share: %d workspaces, S mounted at photos: %v", len(wss), found)
	}
	inS, _, _ := js.AsList(java.ok(legacy.MethodGetChanges, req(js.ClassGetChangesRequest, uuid.NewString(), &a.id,
		map[string]js.Value{"workspaceId": js.NewUUID(sID)})))
	if len(inS) != 1 || longOf(t, inS[0].(*js.Object).Get("id")) != file {
		t.Fatalf("getChanges of S: %d items", len(inS))
	}
	after := streamVersions(t, s, a.workspace, domain.SharedWorkspaceID(a.id, "wirehost-1796000002000"))
	if !slices.Equal(after, []uint64{before[0] + 1, 0}) {
		t.Fatalf("stream versions of W and of the refused share's workspace %v; W was at %d (the share adds one)", after, before[0])
	}
}

// javaEvents wraps an event channel, so that several can sit in one map.
type javaEvents struct{ ch <-chan amqp.Delivery }

func movedMetadata(n *wire.CommitNotification) []wire.ItemMetadata {
	var out []wire.ItemMetadata
	for _, it := range n.Items {
		out = append(out, *it.Metadata)
	}
	return out
}
