package tests

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/legacy"
	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// javaClient is a StackSync desktop as its broker sees it (ObjectMQ 0.5.x, Java
// serialization, MANIFEST.md of the golden vectors): requests on rpc_global_exchange
// with type=java and reply_to=reply_<name>, replies on that exclusive queue, events
// on its own exclusive queues bound to multi#<id>.
type javaClient struct {
	t       *testing.T
	ch      *amqp.Channel
	replyQ  string
	replies <-chan amqp.Delivery
}

func dialJava(t *testing.T, url, name string) *javaClient {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial legacy vhost: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	c := &javaClient{t: t, ch: ch, replyQ: "reply_" + name}
	if _, err := ch.QueueDeclare(c.replyQ, false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if c.replies, err = ch.Consume(c.replyQ, "", true, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// listen binds a fresh exclusive queue to multi#<id>, as ObjectMQ's broker.bind does.
func (c *javaClient) listen(id uuid.UUID) <-chan amqp.Delivery {
	c.t.Helper()
	if err := topology.DeclareEventExchange(c.ch, id); err != nil {
		c.t.Fatal(err)
	}
	q, err := c.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ch.QueueBind(q.Name, "", topology.EventExchange(id), false, nil); err != nil {
		c.t.Fatal(err)
	}
	msgs, err := c.ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return msgs
}

// send publishes a raw body as a request.
func (c *javaClient) send(corr string, body []byte) {
	c.t.Helper()
	err := c.ch.Publish(topology.RPCExchange, topology.RequestQueue, false, false, amqp.Publishing{
		AppId: "ISyncService", CorrelationId: corr, ReplyTo: c.replyQ, Type: "java", Body: body})
	if err != nil {
		c.t.Fatal(err)
	}
}

// call sends method(param) and, unless async, returns the Response's result and error.
func (c *javaClient) call(method string, async bool, param *js.Object) (result js.Value, exc *js.Object) {
	c.t.Helper()
	id := uuid.NewString()
	body, err := js.Encode(js.New(js.ClassOmqRequest, map[string]js.Value{
		"async": async, "id": js.Str(id), "method": js.Str(method), "params": js.NewObjectArray(param)}))
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(id, body)
	if async {
		return nil, nil
	}
	return c.reply(id)
}

func (c *javaClient) reply(corr string) (js.Value, *js.Object) {
	c.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case d := <-c.replies:
			if d.CorrelationId != corr {
				continue // a late reply to an earlier call
			}
			if d.Type != legacy.TypeResponse || d.AppId != legacy.IDOmq {
				c.t.Errorf("reply properties type=%q app_id=%q", d.Type, d.AppId)
			}
			v, err := js.Decode(d.Body)
			if err != nil {
				c.t.Fatalf("reply does not decode: %v", err)
			}
			resp, ok, _ := js.AsObject(v, js.ClassOmqResponse)
			if !ok {
				c.t.Fatalf("reply is a %s", js.Describe(v))
			}
			if id, _, _ := js.AsString(resp.Get("id")); id != corr {
				c.t.Errorf("Response.id %q, want %q", id, corr)
			}
			exc, _, _ := js.AsObject(resp.Get("error"), js.ClassOmqException)
			return resp.Get("result"), exc
		case <-timeout:
			c.t.Fatalf("no reply to %s", corr)
		}
	}
}

func (c *javaClient) ok(method string, param *js.Object) js.Value {
	c.t.Helper()
	res, exc := c.call(method, false, param)
	if exc != nil {
		typ, _, _ := js.AsString(exc.Get("type"))
		msg, _, _ := js.AsString(exc.Get("message"))
		c.t.Fatalf("%s: %s: %s", method, typ, msg)
	}
	return res
}

func (c *javaClient) refused(method string, param *js.Object, wantType string) {
	c.t.Helper()
	_, exc := c.call(method, false, param)
	if exc == nil {
		c.t.Fatalf("%s succeeded, want %s", method, wantType)
	}
	if typ, _, _ := js.AsString(exc.Get("type")); typ != wantType {
		c.t.Fatalf("%s: exception %s, want %s", method, typ, wantType)
	}
}

// nextEvent returns the next event's parameter on msgs, of method.
func nextEvent(t *testing.T, msgs <-chan amqp.Delivery, method string) *js.Object {
	t.Helper()
	select {
	case d := <-msgs:
		if d.Type != "java" || d.CorrelationId == "" {
			t.Errorf("event properties type=%q correlation_id=%q", d.Type, d.CorrelationId)
		}
		v, err := js.Decode(d.Body)
		if err != nil {
			t.Fatalf("event does not decode: %v", err)
		}
		env := v.(*js.Object)
		if m, _, _ := js.AsString(env.Get("method")); m != method || env.Get("async") != true {
			t.Fatalf("event %s (async %v), want %s", m, env.Get("async"), method)
		}
		if id, _, _ := js.AsString(env.Get("id")); id != d.CorrelationId {
			t.Errorf("event id %q, correlation_id %q", id, d.CorrelationId)
		}
		return env.Get("params").(*js.Array).Elems[0].(*js.Object)
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s event", method)
	}
	panic("unreachable")
}

func req(class, requestID string, user *uuid.UUID, f map[string]js.Value) *js.Object {
	if f == nil {
		f = map[string]js.Value{}
	}
	f["requestId"] = js.Str(requestID)
	if user != nil {
		f["userId"] = js.NewUUID(*user)
	}
	return js.New(class, f)
}

// desktopItem is an ItemMetadata as the desktop builds one (isRoot false, children and
// level null, a java.util.Date, chunks an ArrayList).
func desktopItem(id, tempID, parent *int64, version int64, status, name string, folder bool, size int64, dev, ws uuid.UUID, chunks ...string) *js.Object {
	opt := func(p *int64) js.Value {
		if p == nil {
			return nil
		}
		return js.NewLong(*p)
	}
	cs := make([]js.Value, len(chunks))
	for i, c := range chunks {
		cs[i] = js.Str(c)
	}
	mime := "image/jpeg"
	if folder {
		mime = "inode/directory"
	}
	return js.New(js.ClassItemMetadata, map[string]js.Value{
		"checksum": js.NewLong(size * 7), "chunks": js.NewArrayList(cs), "deviceId": js.NewUUID(dev), "filename": js.Str(name),
		"id": opt(id), "isFolder": js.NewBoolean(folder), "isRoot": js.NewBoolean(false), "mimetype": js.Str(mime),
		"modifiedAt": js.NewDate(1796000000123), "parentId": opt(parent), "size": js.NewLong(size), "status": js.Str(status),
		"tempId": opt(tempID), "version": js.NewLong(version), "workspaceId": js.NewUUID(ws),
	})
}

func i64(v int64) *int64 { return &v }

func longOf(t *testing.T, v js.Value) int64 {
	t.Helper()
	n, ok, err := js.AsLong(v)
	if err != nil || !ok {
		t.Fatalf("not a Long: %s (%v)", js.Describe(v), err)
	}
	return n
}

// Issue 17 end to end: an unmodified StackSync desktop's requests (golden-shaped, Java
// serialization) through RabbitMQ to the legacy role of syncd, and one stream of truth
// with JSON devices: a legacy commit reaches a JSON device of the same workspace, and a
// JSON device's commit reaches the legacy client as Java notifyCommit.
func TestLegacyDesktopEndToEnd(t *testing.T) {
	s := newServices(t)
	legacyURL := testenv.AMQPURL(t)
	p := startSyncd(t, s, "-legacy-amqp", legacyURL, "-legacy-swift-url", "http://swift.example/v1/AUTH_x")
	a := addUser(t, s, "Wire")
	jsonDev := dialRaw(t, userURL(t, s, a), a.id)
	jsonID := jsonDev.register("json-laptop")
	jsonInbox := jsonDev.listen(jsonID)
	b := addUser(t, s, "Other")
	bDev := dialRaw(t, userURL(t, s, b), b.id)
	bDevID := bDev.register("other-laptop")
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, err := p.logged(regexpLegacyServing); err != nil {
			return err
		}
		return nil
	})

	java := dialJava(t, legacyURL, "wirehost")
	// getAccountInfo with userId null, by e-mail (trust mode); an unknown e-mail is
	// UserNotFoundException.
	acct := java.ok(legacy.MethodGetAccountInfo, req(js.ClassGetAccountRequest, uuid.NewString(), nil,
		map[string]js.Value{"email": js.Str(a.email)})).(*js.Object)
	if id, _, _ := js.AsUUID(acct.Get("userId")); id != a.id {
		t.Fatalf("AccountInfo.userId %s, want %s", id, a.id)
	}
	java.refused(legacy.MethodGetAccountInfo, req(js.ClassGetAccountRequest, uuid.NewString(), nil,
		map[string]js.Value{"email": js.Str("nobody@example.org")}), legacy.ExcUserNotFound)

	// updateDevice registers (ip, appVersion null) and returns a bare UUID.
	devV := java.ok(legacy.MethodUpdateDevice, req(js.ClassUpdateDeviceRequest, uuid.NewString(), &a.id,
		map[string]js.Value{"deviceName": js.Str("wirehost"), "os": js.Str("Linux-amd64")}))
	dev, ok, err := js.AsUUID(devV)
	if !ok || err != nil {
		t.Fatalf("updateDevice result %s", js.Describe(devV))
	}
	// Another user's device: DeviceNotUpdatedException, as from StackSync.
	java.refused(legacy.MethodUpdateDevice, req(js.ClassUpdateDeviceRequest, uuid.NewString(), &a.id,
		map[string]js.Value{"deviceId": js.NewUUID(bDevID), "deviceName": js.Str("x"), "os": js.Str("y")}), legacy.ExcDeviceNotUpdated)

	wss, _, _ := js.AsList(java.ok(legacy.MethodGetWorkspaces, req(js.ClassGetWorkspacesRequest, uuid.NewString(), &a.id, nil)))
	if len(wss) != 1 {
		t.Fatalf("%d workspaces", len(wss))
	}
	ws0 := wss[0].(*js.Object)
	if id, _, _ := js.AsUUID(ws0.Get("id")); id != a.workspace || ws0.Get("isShared") != false {
		t.Fatalf("workspace %s shared %v", id, ws0.Get("isShared"))
	}
	if parent, ok, _ := js.AsObject(ws0.Get("parentItem"), js.ClassItem); !ok || parent.Get("id") != nil {
		t.Errorf("parentItem must be an Item with a null id")
	}
	changes := func() []js.Value {
		l, _, _ := js.AsList(java.ok(legacy.MethodGetChanges, req(js.ClassGetChangesRequest, uuid.NewString(), &a.id,
			map[string]js.Value{"workspaceId": js.NewUUID(a.workspace)})))
		return l
	}
	if n := len(changes()); n != 0 {
		t.Fatalf("getChanges of a new workspace: %d items", n)
	}

	// A golden-shaped commit: a new folder and a file inside it by tempId.
	wsEvents := java.listen(a.workspace)
	userEvents := java.listen(a.id)
	commit := func(rid string, items ...js.Value) {
		java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, rid, &a.id, map[string]js.Value{
			"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(a.workspace), "items": js.NewArrayList(items)}))
	}
	commit("wirehost-1796000001000",
		desktopItem(nil, i64(41), nil, 1, "NEW", "photos", true, 0, dev, a.workspace),
		desktopItem(nil, i64(42), i64(41), 1, "NEW", "cat.jpg", false, 123456, dev, a.workspace, "c1", "c2"))
	n := nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ := js.AsList(n.Get("items"))
	if rid, _, _ := js.AsString(n.Get("requestId")); rid != "wirehost-1796000001000" || len(items) != 2 {
		t.Fatalf("notifyCommit %s with %d items", rid, len(items))
	}
	var ids [2]int64
	for i, it := range items {
		ci := it.(*js.Object)
		md := ci.Get("metadata").(*js.Object)
		ids[i] = longOf(t, md.Get("id"))
		if ci.Get("commitSucceed") != true || longOf(t, md.Get("tempId")) != int64(41+i) {
			t.Fatalf("item %d: %s", i, js.Dump(ci))
		}
	}
	if longOf(t, n.Get("usedQuota")) != 123456 || n.Get("limitQuota") == nil {
		t.Errorf("quotas: %s", js.Dump(n))
	}
	// The JSON device of the same workspace sees the legacy commit.
	jn, _ := jsonInbox.next(30 * time.Second)
	if jn.RequestID != "wirehost-1796000001000" || len(jn.Items) != 2 || *jn.Items[1].Metadata.ID != ids[1] {
		t.Fatalf("JSON device got %+v", jn)
	}

	// The desktop retries the same commit with a fresh requestId (its one-minute
	// retransmission): the items resolve by tempId, nothing is duplicated.
	commit("wirehost-1796000061000",
		desktopItem(nil, i64(41), nil, 1, "NEW", "photos", true, 0, dev, a.workspace),
		desktopItem(nil, i64(42), i64(41), 1, "NEW", "cat.jpg", false, 123456, dev, a.workspace, "c1", "c2"))
	n = nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ = js.AsList(n.Get("items"))
	for i, it := range items {
		ci := it.(*js.Object)
		if ci.Get("commitSucceed") != true || longOf(t, ci.Get("metadata").(*js.Object).Get("id")) != ids[i] {
			t.Fatalf("retried item %d: %s", i, js.Dump(ci))
		}
	}
	jsonInbox.next(30 * time.Second)

	// A JSON device changes the file: the legacy client gets a Java notifyCommit.
	jsonDev.call("commit", map[string]any{"requestId": "json-1", "userId": a.id, "workspaceId": a.workspace, "deviceId": jsonID,
		"items": []any{map[string]any{"id": ids[1], "version": 2, "status": "CHANGED", "modifiedAt": "2026-11-30T00:53:22.456Z",
			"checksum": 9, "size": 130000, "isFolder": false, "filename": "cat.jpg", "mimetype": "image/jpeg",
			"chunks": []string{"c3"}, "parentId": ids[0]}}}, callOpts{async: true, noReply: true})
	n = nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ = js.AsList(n.Get("items"))
	md := items[0].(*js.Object).Get("metadata").(*js.Object)
	if rid, _, _ := js.AsString(n.Get("requestId")); rid != "json-1" || longOf(t, md.Get("version")) != 2 {
		t.Fatalf("legacy client got %s", js.Dump(n))
	}
	if ms, _, _ := js.AsDateMillis(md.Get("modifiedAt")); ms != 1796000002456 {
		t.Errorf("modifiedAt %d ms, want 1796000002456", ms)
	}
	jsonInbox.next(30 * time.Second)

	// A stale legacy commit of version 2 fails with the server's version.
	commit("wirehost-1796000003000", desktopItem(i64(ids[1]), nil, i64(ids[0]), 2, "CHANGED", "cat.jpg", false, 140000, dev, a.workspace, "c4"))
	n = nextEvent(t, wsEvents, legacy.MethodNotifyCommit)
	items, _, _ = js.AsList(n.Get("items"))
	ci := items[0].(*js.Object)
	if ci.Get("commitSucceed") != false || longOf(t, ci.Get("committedVersion")) != 2 ||
		longOf(t, ci.Get("metadata").(*js.Object).Get("checksum")) != 9 {
		t.Fatalf("conflict: %s", js.Dump(ci))
	}
	jsonInbox.next(30 * time.Second)

	// updateWorkspace: notifyUpdateWorkspace on multi#<userId>, then the void reply.
	res := java.ok(legacy.MethodUpdateWorkspace, req(js.ClassUpdateWorkspaceRequest, uuid.NewString(), &a.id, map[string]js.Value{
		"workspaceId": js.NewUUID(a.workspace), "workspaceName": js.Str("default"), "parentItemId": js.NewLong(ids[0])}))
	if res != nil {
		t.Errorf("updateWorkspace result %s, want null", js.Describe(res))
	}
	uw := nextEvent(t, userEvents, legacy.MethodNotifyUpdateWorkspace)
	if name, _, _ := js.AsString(uw.Get("folderName")); name != "default" || longOf(t, uw.Get("parentItemId")) != ids[0] {
		t.Errorf("notifyUpdateWorkspace %s", js.Dump(uw))
	}

	// getChanges: the folder at level 1, the file (version 2) at level 2.
	got := changes()
	if len(got) != 2 {
		t.Fatalf("getChanges: %d items", len(got))
	}
	for i, want := range []struct{ id, version int64 }{{ids[0], 1}, {ids[1], 2}} {
		m := got[i].(*js.Object)
		lvl, _, _ := js.AsInteger(m.Get("level"))
		if longOf(t, m.Get("id")) != want.id || longOf(t, m.Get("version")) != want.version || lvl != int32(i+1) {
			t.Errorf("item %d: %s", i, js.Dump(m))
		}
	}

	// Refused input changes nothing: a body that is not a Java stream, a gadget class,
	// and a commit of another user's workspace by body userId.
	java.send("junk-1", []byte(`{"method":"commit"}`))
	if _, exc := java.reply("junk-1"); exc == nil {
		t.Error("junk body: no exception")
	}
	golden, err := os.ReadFile("../transport/legacy/javaser/testdata/golden/01-req-getAccountInfo.bin")
	if err != nil {
		t.Fatal(err)
	}
	gadget := bytes.Replace(golden, []byte("\x00\x1aomq.common.message.Request"), []byte("\x00\x17java.util.PriorityQueue"), 1)
	java.send("gadget-1", gadget)
	if _, exc := java.reply("gadget-1"); exc == nil {
		t.Error("gadget class: no exception")
	} else if msg, _, _ := js.AsString(exc.Get("message")); !strings.Contains(msg, "not in the allowed set") {
		t.Errorf("gadget class: %q", msg)
	}
	java.call(legacy.MethodCommit, true, req(js.ClassCommitRequest, "evil-1", &a.id, map[string]js.Value{
		"deviceId": js.NewUUID(dev), "workspaceId": js.NewUUID(b.workspace), "items": js.NewArrayList([]js.Value{
			desktopItem(nil, i64(1), nil, 1, "NEW", "evil", true, 0, dev, b.workspace)})}))
	java.refused(legacy.MethodGetChanges, req(js.ClassGetChangesRequest, uuid.NewString(), &a.id,
		map[string]js.Value{"workspaceId": js.NewUUID(b.workspace)}), legacy.ExcRuntime)
	if page := bDev.changesSince(b.workspace, 0); page.WorkspaceVersion != 0 || len(page.Items) != 0 {
		t.Errorf("the other user's workspace changed: %+v", page)
	}
	if n := len(changes()); n != 2 {
		t.Errorf("after refused input: %d items", n)
	}
}

var regexpLegacyServing = regexp.MustCompile("(serving legacy StackSync requests)")
