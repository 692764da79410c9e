package broker

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// A large body arrives in one allocation of its declared size, not grown frame by
// frame (the patch in third_party/amqp091-go, PATCHES.md): the bytes allocated while
// receiving a 40 MiB message stay under 5x its size. With the patch they are 2.8x
// (3.8x under -race): the body once, and the frames as amqp091-go reads them, 1.5x.
// Upstream amqp091-go allocates 7.3x (8.3x under -race), the body grown by append
// from one frame's worth, so this fails if go.mod's replace is dropped.
func TestLargeBodyIsAllocatedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		testenv.Missing(t, "RabbitMQ", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 40<<20/16)
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q.Name, true, false, amqp.Publishing{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := conf.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("publish not confirmed: %v %v", ok, err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d, ok, err := ch.Get(q.Name, true)
	runtime.ReadMemStats(&after)
	if err != nil || !ok {
		t.Fatalf("get: ok %v, %v", ok, err)
	}
	if !bytes.Equal(d.Body, body) {
		t.Fatalf("body of %d bytes differs from the %d published", len(d.Body), len(body))
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("receiving %d bytes allocated %d (%.1fx)", len(body), allocated, float64(allocated)/float64(len(body)))
	if allocated > 5*uint64(len(body)) {
		t.Fatalf("receiving %d bytes allocated %d: the body was grown, not allocated once (is third_party/amqp091-go's patch in go.mod's replace?)", len(body), allocated)
	}
}
