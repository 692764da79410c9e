package tests

import (
	"slices"
	"strings"
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
			desktopItem(nil, i64(42), i64(41), 1, "NEW", "cat.jpg", false, 123456, dev, a.workspace, "c1"),
			desktopItem(nil, i64(43), i64(41), 1, "NEW", "2026", true, 0, dev, a.workspace),
			desktopItem(nil, i64(44), i64(43), 1, "NEW", "dog.jpg", false, 654321, dev, a.workspace, "c2")})}))
	n := nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ := js.AsList(n.Get("items"))
	folder := longOf(t, items[0].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	file := longOf(t, items[1].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	sub := longOf(t, items[2].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	subFile := longOf(t, items[3].(*js.Object).Get("metadata").(*js.Object).Get("id"))
	// F changes once more before the share: S's root item carries F's version as held in W.
	java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, "wirehost-1796000001500", &a.id, map[string]js.Value{
		"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(a.workspace), "items": js.NewArrayList([]js.Value{
			desktopItem(&folder, nil, nil, 2, "CHANGED", "photos", true, 0, dev, a.workspace)})}))
	if n := nextEvent(t, wsEvents, legacy.MethodNotifyCommit); mustList(t, n.Get("items"))[0].(*js.Object).Get("commitSucceed") != true {
		t.Fatalf("F's second version: %s", js.Dump(n))
	}
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
		seen.movedIn == nil || !slices.Equal(ids(movedMetadata(seen.movedIn)), []int64{file, sub, subFile}) {
		t.Fatalf("JSON member: %+v", seen)
	}
	// A re-share of the same folder adding one more legacy user: that user's proposal
	// carries the re-share's requestId (StackSync answered each request with its own).
	d := addUser(t, s, "Later")
	laterEvents := other.listen(d.id)
	share("wirehost-1796000004000", folder, d.email)
	pr := nextEvent(t, laterEvents, legacy.MethodNotifyShareProposal)
	if ws, _, _ := js.AsUUID(pr.Get("workspaceId")); ws != sID {
		t.Fatalf("re-share: proposal %s", js.Dump(pr))
	}
	if rid, _, _ := js.AsString(pr.Get("requestId")); rid != "wirehost-1796000004000" {
		t.Fatalf("re-share: proposal's requestId %q, want the re-share's", rid)
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
	// getChanges of S is as StackSync listed it: F first (the desktop drops item 0 as the
	// shared root), then every item of S, F's children under F.
	// The root's filename is each user's name for S (the legacy member renames S first).
	if res := other.ok(legacy.MethodUpdateWorkspace, req(js.ClassUpdateWorkspaceRequest, uuid.NewString(), &c.id, map[string]js.Value{
		"workspaceId": js.NewUUID(sID), "workspaceName": js.Str("family")})); res != nil {
		t.Fatalf("updateWorkspace: %s", js.Describe(res))
	}
	for _, u := range []struct {
		who, name string
		id        uuid.UUID
	}{{"owner", "photos", a.id}, {"legacy member", "family", c.id}} {
		inS, _, _ := js.AsList(java.ok(legacy.MethodGetChanges, req(js.ClassGetChangesRequest, uuid.NewString(), &u.id,
			map[string]js.Value{"workspaceId": js.NewUUID(sID)})))
		checkSharedRoot(t, u.who, u.name, inS, sID, folder, [][3]int64{{file, folder, 2}, {sub, folder, 2}, {subFile, sub, 3}})
	}
	sharedCommitsBothWays(t, java, bDev, bInbox, b.id, bDevID, dev, &a.id, sID, folder, file)
	operatorSharedRoot(t, s, java, other, a.id, c.id, dev)
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

// checkSharedRoot checks a getChanges of S: F's root item first (F's id, the user's
// name for S, a folder at level 1 with parent null, F's version 2 and status CHANGED as
// held in W), then want's items in order, each {id, parentId, level}.
func checkSharedRoot(t *testing.T, who, wantName string, inS []js.Value, sID uuid.UUID, folder int64, want [][3]int64) {
	t.Helper()
	if len(inS) != len(want)+1 {
		t.Fatalf("%s: getChanges of S has %d items, want %d", who, len(inS), len(want)+1)
	}
	root := inS[0].(*js.Object)
	name, _, _ := js.AsString(root.Get("filename"))
	status, _, _ := js.AsString(root.Get("status"))
	ws, _, _ := js.AsUUID(root.Get("workspaceId"))
	level, _, _ := js.AsInteger(root.Get("level"))
	if longOf(t, root.Get("id")) != folder || name != wantName || root.Get("parentId") != nil || level != 1 ||
		longOf(t, root.Get("version")) != 2 || status != "CHANGED" || ws != sID || !isTrue(root.Get("isFolder")) ||
		longOf(t, root.Get("checksum")) != 0 || longOf(t, root.Get("size")) != 0 {
		t.Fatalf("%s: S's root item %s", who, js.Dump(root))
	}
	for i, w := range want {
		it := inS[i+1].(*js.Object)
		lvl, _, _ := js.AsInteger(it.Get("level"))
		if longOf(t, it.Get("id")) != w[0] || longOf(t, it.Get("parentId")) != w[1] || int64(lvl) != w[2] {
			t.Fatalf("%s: item %d of S: %s, want id %d parent %d level %d", who, i+1, js.Dump(it), w[0], w[1], w[2])
		}
	}
}

func isTrue(v js.Value) bool { b, ok, err := js.AsBoolean(v); return ok && err == nil && b }

// sharedCommitsBothWays: a desktop's commit in S under F reaches the JSON member with
// parentId null, and the JSON member's commit at S's root reaches the desktop (on
// multi#<S>) with parentId F.
func sharedCommitsBothWays(t *testing.T, java *javaClient, bDev *rawDevice, bInbox *inbox, bID, bDevID, dev uuid.UUID,
	owner *uuid.UUID, sID uuid.UUID, folder, file int64) {
	t.Helper()
	sEvents := java.listen(sID)
	java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, "wirehost-1796000004000", owner, map[string]js.Value{
		"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(sID), "items": js.NewArrayList([]js.Value{
			desktopItem(nil, i64(45), &folder, 1, "NEW", "owl.jpg", false, 777, dev, sID, "c5"),
			desktopItem(i64(file), nil, &folder, 2, "RENAMED", "kitten.jpg", false, 123456, dev, sID, "c1")})}))
	jn := bInbox.commitOf("wirehost-1796000004000")
	if len(jn.Items) != 2 || !jn.Items[0].CommitSucceed || !jn.Items[1].CommitSucceed ||
		jn.Items[0].Metadata.ParentID != nil || jn.Items[1].Metadata.ParentID != nil {
		t.Fatalf("the JSON member got %+v", jn)
	}
	owl := int64(*jn.Items[0].Metadata.ID)
	n := nextEvent(t, sEvents, legacy.MethodNotifyCommit)
	if rid, _, _ := js.AsString(n.Get("requestId")); rid != "wirehost-1796000004000" {
		t.Fatalf("desktop: %s", js.Dump(n))
	}
	for _, it := range mustList(t, n.Get("items")) {
		if md := it.(*js.Object).Get("metadata").(*js.Object); longOf(t, md.Get("parentId")) != folder {
			t.Fatalf("desktop: its own commit echoed with %s", js.Dump(md))
		}
	}
	bDev.call("commit", map[string]any{"requestId": "json-s-1", "userId": bID, "workspaceId": sID, "deviceId": bDevID,
		"items": []any{itemJSON(7, "fox.jpg", false, nil, 55), map[string]any{"id": owl, "version": 2, "status": "CHANGED",
			"modifiedAt": "2026-11-30T00:53:22.456Z", "checksum": 9, "size": 888, "isFolder": false, "filename": "owl.jpg",
			"mimetype": "image/jpeg", "chunks": []string{"c6"}, "parentId": nil}}}, callOpts{async: true, noReply: true})
	n = nextEvent(t, sEvents, legacy.MethodNotifyCommit)
	items := mustList(t, n.Get("items"))
	if rid, _, _ := js.AsString(n.Get("requestId")); rid != "json-s-1" || len(items) != 2 {
		t.Fatalf("desktop: %s", js.Dump(n))
	}
	for _, it := range items {
		ci := it.(*js.Object)
		if md := ci.Get("metadata").(*js.Object); ci.Get("commitSucceed") != true || longOf(t, md.Get("parentId")) != folder {
			t.Fatalf("desktop: the JSON member's commit as %s", js.Dump(ci))
		}
	}
}

func mustList(t *testing.T, v js.Value) []js.Value {
	t.Helper()
	l, ok, err := js.AsList(v)
	if err != nil || !ok {
		t.Fatalf("not a list: %s", js.Describe(v))
	}
	return l
}

// operatorSharedRoot: a shared workspace T an operator created (no share, so no F) has a
// root of its own on the legacy wire, a negative id: getChanges lists it first, a
// desktop's commit under it is accepted (the root maps back to T's root) and echoed under
// it, and another member's desktop reads the item under it.
func operatorSharedRoot(t *testing.T, s services, java, other *javaClient, owner, member, dev uuid.UUID) {
	t.Helper()
	tID := uuid.MustParse(strings.TrimSpace(syncctl(t, s, "workspace", "create", "--owner", owner.String(), "--name", "team")))
	syncctl(t, s, "workspace", "add-member", "--workspace", tID.String(), "--user", member.String())
	read := func(c *javaClient, u uuid.UUID) []js.Value {
		return mustList(t, c.ok(legacy.MethodGetChanges, req(js.ClassGetChangesRequest, uuid.NewString(), &u,
			map[string]js.Value{"workspaceId": js.NewUUID(tID)})))
	}
	inT := read(java, owner)
	if len(inT) != 1 {
		t.Fatalf("getChanges of T: %d items", len(inT))
	}
	root := longOf(t, inT[0].(*js.Object).Get("id"))
	if name, _, _ := js.AsString(inT[0].(*js.Object).Get("filename")); root >= 0 || name != "team" || !isTrue(inT[0].(*js.Object).Get("isFolder")) {
		t.Fatalf("T's root: %s", js.Dump(inT[0]))
	}
	tEvents := java.listen(tID)
	java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, "wirehost-1796000005000", &owner, map[string]js.Value{
		"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(tID), "items": js.NewArrayList([]js.Value{
			desktopItem(nil, i64(46), &root, 1, "NEW", "plan.txt", false, 12, dev, tID, "c7")})}))
	ci := mustList(t, nextEvent(t, tEvents, legacy.MethodNotifyCommit).Get("items"))[0].(*js.Object)
	if md := ci.Get("metadata").(*js.Object); ci.Get("commitSucceed") != true || longOf(t, md.Get("parentId")) != root {
		t.Fatalf("a desktop's commit under T's root: %s", js.Dump(ci))
	}
	checkSharedRootOf(t, read(other, member), root, "team")
}

// checkSharedRootOf checks a getChanges of T as its member reads it: T's root, then one
// item under it.
func checkSharedRootOf(t *testing.T, inT []js.Value, root int64, name string) {
	t.Helper()
	if len(inT) != 2 || longOf(t, inT[0].(*js.Object).Get("id")) != root || longOf(t, inT[1].(*js.Object).Get("parentId")) != root {
		t.Fatalf("the member's getChanges of T: %d items, %s", len(inT), js.Dump(inT[len(inT)-1]))
	}
	if n, _, _ := js.AsString(inT[0].(*js.Object).Get("filename")); n != name {
		t.Fatalf("the member's root of T is named %q", n)
	}
}
