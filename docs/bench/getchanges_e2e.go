//go:build ignore

// getchanges_e2e sends getChanges requests of one workspace through RabbitMQ, one after
// the other, each waiting for its whole reply, and prints the reply size, the latencies
// and the server's resident memory (VmRSS, VmHWM of -pid) after them. With -bump it
// rewrites the workspace's read-model row before each request, so that every request
// misses the server's cache (as after a commit). getchanges_e2e.sh runs it against a
// syncd; see docs/benchmarks.md.
//
//	go run docs/bench/getchanges_e2e.go -amqp URL -user U -ws W [-n 20] [-pid P] [-bump DSN]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("amqp", "", "")
	user := flag.String("user", "", "")
	ws := flag.String("ws", "", "")
	n := flag.Int("n", 10, "")
	pid := flag.Int("pid", 0, "")
	bump := flag.String("bump", "", "DSN: rewrite the workspace row before each request (a cache miss)")
	flag.Parse()
	conn, err := amqp.Dial(*url)
	must(err)
	ch, err := conn.Channel()
	must(err)
	q := "reply." + *user + "." + uuid.NewString()[:8]
	_, err = ch.QueueDeclare(q, false, true, true, false, nil)
	must(err)
	replies, err := ch.Consume(q, "", true, true, false, false, nil)
	must(err)
	var ds []time.Duration
	size := 0
	var db *pgx.Conn
	if *bump != "" {
		db, err = pgx.Connect(context.Background(), *bump)
		must(err)
	}
	for i := range *n {
		if db != nil {
			_, err := db.Exec(context.Background(), `UPDATE proj_workspaces.workspaces SET version = version WHERE workspace_id = $1`, *ws)
			must(err)
		}
		corr := strconv.Itoa(i)
		body := fmt.Appendf(nil, `{"method":"getChanges","params":[{"requestId":"g","userId":"%s","workspaceId":"%s"}],"id":"%s","async":false}`, *user, *ws, corr)
		start := time.Now()
		must(ch.PublishWithContext(context.Background(), "rpc_global_exchange", "ISyncService", false, false,
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
			break
		}
		ds = append(ds, time.Since(start))
	}
	first := ds[0]
	slices.Sort(ds)
	fmt.Printf("bytes=%d first=%v min=%v p50=%v max=%v", size, first.Round(time.Millisecond/10), ds[0].Round(time.Millisecond/10), ds[len(ds)/2].Round(time.Millisecond/10), ds[len(ds)-1].Round(time.Millisecond/10))
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

func must(err error) {
	if err != nil {
		panic(err)
	}
}
