//go:build ignore

// amqp_probe replays, without syncd and without a database, the broker traffic of one
// commit of `syncctl bench --scenario spread`: -workers devices, each in a loop, publish
// a transient request (with confirms) to a direct exchange and its non-durable queue; one
// consumer (prefetch 64) publishes a persistent notification to the device's fanout
// exchange (with confirms) and acks the request; the device consumes its durable queue
// (x-expires, x-max-length, drop-head) and acks the notification, then sends the next
// request. It prints round trips per second and the CPU the broker process (-beam, the
// process name in /proc; docs/bench/private_rabbitmq.sh starts one named amqbeam.smp)
// spent per round trip. Flags switch one part of the pattern off or to an alternative:
// -qv 2 (classic queue version 2), -qv 3 (quorum), -qv 4 (lazy), -persist=false,
// -confirm=false, -fanout=false (the default exchange), -args=false, -ackmulti (the
// consumer acks with multiple=true when no delivery waits), -rate N (round trips per
// second per device). See docs/benchmarks.md, "RabbitMQ's work per commit".
//
//	go run docs/bench/amqp_probe.go [-url amqp://guest:guest@127.0.0.1:19621/amq_probe] [-api http://127.0.0.1:19623/api] [-d 6s] [flags]
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var (
	url      = flag.String("url", "amqp://guest:guest@127.0.0.1:19621/amq_probe", "")
	workers  = flag.Int("workers", 16, "")
	dur      = flag.Duration("d", 10*time.Second, "")
	warm     = flag.Duration("warm", 2*time.Second, "")
	qv       = flag.Int("qv", 1, "device queue version")
	ackMulti = flag.Bool("ackmulti", false, "server acks with multiple when idle")
	persist  = flag.Bool("persist", true, "")
	confirm  = flag.Bool("confirm", true, "server publish confirms")
	reqConf  = flag.Bool("reqconfirm", true, "device request confirms")
	args     = flag.Bool("args", true, "x-expires, x-max-length, drop-head")
	fanout   = flag.Bool("fanout", true, "")
	durable  = flag.Bool("durable", true, "")
	size     = flag.Int("size", 700, "")
	rate     = flag.Float64("rate", 0, "ops/s per worker cap")
	nreq     = flag.Int("reqsize", 800, "")
	stamp    = flag.Bool("ts", false, "timestamp+msgid props")
	api      = flag.String("api", "http://127.0.0.1:19623/api", "")
	beam     = flag.String("beam", "amqbeam.smp", "")
)

func beamTicks() int64 { u, k := beamUS(); return u + k }

func beamUS() (int64, int64) {
	ms, _ := filepath.Glob("/proc/[0-9]*/stat")
	var tu, tk int64
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		s := string(b)
		if !strings.Contains(s, "("+*beam+")") {
			continue
		}
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		tu += u
		tk += k
	}
	return tu, tk
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	flag.Parse()
	vh := (*url)[strings.LastIndex(*url, "/")+1:]
	req, _ := http.NewRequest("PUT", *api+"/vhosts/"+vh, nil)
	req.SetBasicAuth("guest", "guest")
	_, err := http.DefaultClient.Do(req)
	must(err)
	req, _ = http.NewRequest("PUT", *api+"/permissions/"+vh+"/guest", strings.NewReader(`{"configure":".*","write":".*","read":".*"}`))
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("content-type", "application/json")
	_, err = http.DefaultClient.Do(req)
	must(err)
	defer func() {
		req, _ := http.NewRequest("DELETE", *api+"/vhosts/"+vh, nil)
		req.SetBasicAuth("guest", "guest")
		http.DefaultClient.Do(req)
	}()

	sconn, err := amqp.Dial(*url)
	must(err)
	sch, _ := sconn.Channel()
	must(sch.ExchangeDeclare("rpc", "direct", false, false, false, false, nil))
	_, err = sch.QueueDeclare("ISync", false, false, false, false, nil)
	must(err)
	must(sch.QueueBind("ISync", "ISync", "rpc", false, nil))
	must(sch.Qos(64, 0, false))
	pub, _ := sconn.Channel()
	if *confirm {
		must(pub.Confirm(false))
	}
	var pubMu sync.Mutex
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'x'
	}
	rbody := make([]byte, *nreq)
	for i := range rbody {
		rbody[i] = 'y'
	}
	// devices
	type dev struct {
		pub  *amqp.Channel
		done chan struct{}
	}
	devs := make([]*dev, *workers)
	qargs := amqp.Table{}
	if *args {
		qargs["x-expires"] = int64(7 * 24 * 3600 * 1000)
		qargs["x-max-length"] = int64(10000)
		qargs["x-overflow"] = "drop-head"
	}
	switch *qv {
	case 2:
		qargs["x-queue-version"] = int64(2)
	case 3:
		qargs["x-queue-type"] = "quorum"
	case 4:
		qargs["x-queue-mode"] = "lazy"
	}
	for i := range devs {
		c, err := amqp.Dial(*url)
		must(err)
		d := &dev{done: make(chan struct{}, 1)}
		d.pub, _ = c.Channel()
		if *reqConf {
			must(d.pub.Confirm(false))
		}
		ev, _ := c.Channel()
		must(ev.Qos(100, 0, false))
		q := fmt.Sprintf("events.%d", i)
		_, err = ev.QueueDeclare(q, *durable, false, false, false, qargs)
		must(err)
		must(ev.ExchangeDeclare(fmt.Sprintf("multi#%d", i), "fanout", false, false, false, false, nil))
		must(ev.QueueBind(q, "", fmt.Sprintf("multi#%d", i), false, nil))
		dl, err := ev.Consume(q, "", false, false, false, false, nil)
		must(err)
		go func() {
			for m := range dl {
				m.Ack(false)
				d.done <- struct{}{}
			}
		}()
		devs[i] = d
	}
	dl, err := sch.Consume("ISync", "", false, false, false, false, nil)
	must(err)
	go func() {
		var last uint64
		pending := false
		for {
			var m amqp.Delivery
			var ok bool
			if pending {
				select {
				case m, ok = <-dl:
				default:
					sch.Ack(last, true)
					pending = false
					m, ok = <-dl
				}
			} else {
				m, ok = <-dl
			}
			if !ok {
				return
			}
			i, _ := strconv.Atoi(m.CorrelationId)
			p := amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: "ws", CorrelationId: "c", Body: body}
			if *persist {
				p.DeliveryMode = amqp.Persistent
			}
			if *stamp {
				p.MessageId = "0123456789abcdef0123456789abcdef0123"
				p.Timestamp = time.Now()
			}
			ex, key := fmt.Sprintf("multi#%d", i), ""
			if !*fanout {
				ex, key = "", fmt.Sprintf("events.%d", i)
			}
			pubMu.Lock()
			dc, err := pub.PublishWithDeferredConfirm(ex, key, false, false, p)
			pubMu.Unlock()
			must(err)
			if dc != nil {
				go dc.Wait()
			}
			if *ackMulti {
				last, pending = m.DeliveryTag, true
			} else {
				m.Ack(false)
			}
		}
	}()
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				dc, err := d.pub.PublishWithDeferredConfirm("rpc", "ISync", false, false, amqp.Publishing{ContentType: "application/json", Type: "gson", AppId: "ISyncService", CorrelationId: strconv.Itoa(i), ReplyTo: "reply.x", Body: rbody})
				must(err)
				if dc != nil {
					dc.Wait()
				}
				<-d.done
				n.Add(1)
				if *rate > 0 {
					time.Sleep(time.Duration(float64(time.Second) / *rate))
				}
			}
		}()
	}
	time.Sleep(*warm)
	u0, k0 := beamUS()
	n0, t0, b0 := n.Load(), time.Now(), u0+k0
	time.Sleep(*dur)
	u1, k1 := beamUS()
	n1, t1, b1 := n.Load(), time.Now(), u1+k1
	close(stop)
	wg.Wait()
	ops := float64(n1 - n0)
	fmt.Printf("%s  %.0f/s  beam %.3f ms/op (user %.3f sys %.3f)\n", strings.Join(os.Args[1:], " "), ops/t1.Sub(t0).Seconds(), float64(b1-b0)*10/ops, float64(u1-u0)*10/ops, float64(k1-k0)*10/ops)
}
