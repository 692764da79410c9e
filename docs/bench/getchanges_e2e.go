//go:build ignore

// getchanges_e2e sends getChanges requests of one workspace through RabbitMQ, one after
// the other, each waiting for its whole reply, and prints the reply size, the latencies
// and the server's resident memory (VmRSS, VmHWM of -pid) after them. It is a device of
// the user: with -fill N it first fills the user's personal workspace with N items
// through the protocol (commits of up to 1,000 items: folders of 99 files with two
// chunks each); with -commit it commits one new file through the protocol (waiting for
// its notifyCommit, untimed) before each timed request, so that every request comes
// right after a real commit. With -decode it then decodes each reply as a device would,
// untimed in the latencies and reported apart: "fast" with transport/client's decoders
// (wire.ParseReply, wire.ParseItems), "json" as the client did before (encoding/json,
// then ToItem). getchanges_e2e.sh runs it against a syncd; see docs/benchmarks.md.
//
//	go run docs/bench/getchanges_e2e.go -amqp URL -user U [-fill N] [-n 20] [-pid P] [-commit] [-decode fast|json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/client"
	"github.com/stacksync-es/syncservice/transport/wire"
)

func main() {
	url := flag.String("amqp", "", "")
	user := flag.String("user", "", "")
	n := flag.Int("n", 10, "")
	pid := flag.Int("pid", 0, "")
	fill := flag.Int("fill", 0, "items to commit to the workspace first")
	commit := flag.Bool("commit", false, "commit one new file before each request")
	decode := flag.String("decode", "", "also decode each reply: fast or json")
	flag.Parse()
	ctx := context.Background()
	uid := uuid.MustParse(*user)
	dev := device(ctx, *url, uid)
	defer dev.Close()
	wss, err := dev.GetWorkspaces(ctx)
	must(err)
	ws := wss[0].ID
	if *fill > 0 {
		fillWorkspace(ctx, dev, ws, *fill)
		fmt.Printf("filled %d items; ", *fill)
	}
	conn, err := amqp.Dial(*url)
	must(err)
	ch, err := conn.Channel()
	must(err)
	q := "reply." + *user + "." + uuid.NewString()[:8]
	_, err = ch.QueueDeclare(q, false, true, true, false, nil)
	must(err)
	replies, err := ch.Consume(q, "", true, true, false, false, nil)
	must(err)
	var ds, decodes []time.Duration
	size := 0
	for i := range *n {
		if *commit {
			commitFiles(ctx, dev, ws, nil, fmt.Sprintf("after-%d", i), 1)
		}
		corr := strconv.Itoa(i)
		body := fmt.Appendf(nil, `{"method":"getChanges","params":[{"requestId":"g","userId":"%s","workspaceId":"%s"}],"id":"%s","async":false}`, *user, ws, corr)
		start := time.Now()
		must(ch.PublishWithContext(ctx, "rpc_global_exchange", "ISyncService", false, false,
			amqp.Publishing{ContentType: "application/json", CorrelationId: corr, ReplyTo: q, Body: body}))
		for d := range replies {
			if d.CorrelationId != corr {
				continue
			}
			if !strings.HasPrefix(string(d.Body[:min(len(d.Body), 11)]), `{"result":[`) {
				fmt.Printf("bad reply %.300s\n", d.Body)
				os.Exit(1)
			}
			size = len(d.Body)
			ds = append(ds, time.Since(start))
			if *decode != "" {
				decodes = append(decodes, decodeReply(*decode, d.Body))
			}
			break
		}
	}
	first := ds[0]
	slices.Sort(ds)
	fmt.Printf("bytes=%d first=%v min=%v p50=%v max=%v", size, first.Round(time.Millisecond/10), ds[0].Round(time.Millisecond/10), ds[len(ds)/2].Round(time.Millisecond/10), ds[len(ds)-1].Round(time.Millisecond/10))
	if len(decodes) > 0 {
		slices.Sort(decodes)
		fmt.Printf(" decode(%s) p50=%v", *decode, decodes[len(decodes)/2].Round(time.Millisecond/10))
	}
	if *pid != 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", *pid))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "VmHWM:") {
				fmt.Printf(" %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
	fmt.Println()
}

// decodeReply decodes body as a device's client would and returns how long it took.
func decodeReply(how string, body []byte) time.Duration {
	start := time.Now()
	var n int
	switch how {
	case "fast":
		r, err := wire.ParseReply(body)
		must(err)
		items, err := wire.ParseItems(r.Result)
		must(err)
		n = len(items)
	default: // json: the client before transport/client used the wire package's fast paths
		var r struct {
			Result json.RawMessage `json:"result"`
		}
		must(json.Unmarshal(body, &r))
		var ws []wire.ItemMetadata
		must(json.Unmarshal(r.Result, &ws))
		for i, w := range ws {
			_, err := w.ToItem(i)
			must(err)
		}
		n = len(ws)
	}
	if n == 0 {
		must(fmt.Errorf("no items decoded"))
	}
	return time.Since(start)
}

// device connects as a registered, subscribed device of the user (a server in trust
// mode), once the user's account is readable. It starts at the workspaces' current
// versions: no catch-up reads load the server while requests are timed.
func device(ctx context.Context, url string, user uuid.UUID) *client.Client {
	cl, err := client.Dial(ctx, client.Config{URL: url, UserID: user, SharedLogin: true, DeviceName: "getchanges-e2e", Timeout: 60 * time.Second})
	must(err)
	versions := map[uuid.UUID]int64{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wss, err := cl.GetWorkspaces(ctx)
		if err == nil || time.Now().After(deadline) {
			must(err)
			for _, w := range wss {
				versions[w.ID] = w.LatestRevision
			}
			break
		}
	}
	_, err = cl.UpdateDevice(ctx, nil)
	must(err)
	must(cl.Subscribe(client.SubscribeOptions{Versions: versions, Handler: func(client.Update) {}}))
	return cl
}

// fillWorkspace commits n items: a folder per 100 items, each with 99 files.
func fillWorkspace(ctx context.Context, dev *client.Client, ws uuid.UUID, n int) {
	folders := commitFolders(ctx, dev, ws, (n+99)/100)
	left := n - len(folders)
	for i := 0; left > 0; i += 10 {
		var items []domain.ItemMetadata
		for f := i; f < i+10 && f < len(folders) && left > 0; f++ {
			k := min(99, left)
			items = append(items, files(&folders[f], fmt.Sprintf("f%d", f), k)...)
			left -= k
		}
		send(ctx, dev, ws, items)
	}
}

var temp int64

func commitFolders(ctx context.Context, dev *client.Client, ws uuid.UUID, n int) []domain.ItemID {
	var ids []domain.ItemID
	for n > 0 {
		var items []domain.ItemMetadata
		for range min(n, 1000) {
			temp--
			items = append(items, domain.ItemMetadata{TempID: ptr(temp), Version: 1, Status: domain.StatusNew, ModifiedAt: time.Now().UTC(),
				IsFolder: true, Filename: fmt.Sprintf("folder %d", -temp), Mimetype: "inode/directory", Chunks: []string{}})
		}
		n -= len(items)
		ids = append(ids, send(ctx, dev, ws, items)...)
	}
	return ids
}

func files(parent *domain.ItemID, tag string, n int) []domain.ItemMetadata {
	var items []domain.ItemMetadata
	for k := range n {
		temp--
		items = append(items, domain.ItemMetadata{TempID: ptr(temp), Version: 1, ParentID: parent, Status: domain.StatusNew,
			ModifiedAt: time.Now().UTC(), Filename: fmt.Sprintf("file %s-%d.txt", tag, k), Mimetype: "text/plain", Size: int64(k * 7919 % 10000),
			Checksum: -temp * 7919, Chunks: []string{fmt.Sprintf("%032x%s", -temp, "abcdefgh"), fmt.Sprintf("%032x%s", -temp*3, "abcdefgh")}})
	}
	return items
}

func commitFiles(ctx context.Context, dev *client.Client, ws uuid.UUID, parent *domain.ItemID, tag string, n int) {
	send(ctx, dev, ws, files(parent, tag, n))
}

// send commits items and returns their ids, in order.
func send(ctx context.Context, dev *client.Client, ws uuid.UUID, items []domain.ItemMetadata) []domain.ItemID {
	n, err := dev.CommitAndWait(ctx, &client.CommitRequest{WorkspaceID: ws, Items: items})
	must(err)
	var ids []domain.ItemID
	for _, it := range n.Items {
		if !it.CommitSucceed || it.Metadata == nil || it.Metadata.ID == nil {
			fmt.Printf("commit refused an item: %+v\n", it)
			os.Exit(1)
		}
		ids = append(ids, domain.ItemID(*it.Metadata.ID))
	}
	return ids
}

func ptr[T any](v T) *T { return &v }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
