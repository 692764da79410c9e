package broker

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // refuses connections from now on
	return "amqp://guest:guest@" + l.Addr().String() + "/"
}

func vhostOf(t *testing.T, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(p.Path, "/")
}

// Several URLs: Dial passes over a node that refuses and reaches the next; with none
// reachable it fails naming each.
func TestDialAnyNode(t *testing.T) {
	live, dead := testenv.AMQPURL(t), deadURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Dial(ctx, Config{URL: dead + " , " + live})
	if err != nil {
		t.Fatalf("dial with the first node down: %v", err)
	}
	if got := conn.Config.Vhost; got != vhostOf(t, live) {
		t.Errorf("connected to vhost %q, want %q", got, vhostOf(t, live))
	}
	conn.Close()
	_, err = Dial(ctx, Config{URL: dead + "," + dead})
	if err == nil || !strings.Contains(err.Error(), "dial broker 127.0.0.1:") {
		t.Fatalf("dial with every node down: %v", err)
	}
	if err := (Config{URL: "amqp://x/," + "http://not-amqp"}).Validate(); err == nil {
		t.Fatal("a list with a URL that is not AMQP validated")
	}
}

// After a lost connection Run moves on to the next node (the lost one is likely down),
// and comes back round to the first.
func TestRunMovesToTheNextNode(t *testing.T) {
	a, b := testenv.AMQPURL(t), testenv.AMQPURL(t) // two vhosts stand for two nodes
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var seen []string
	err := Run(ctx, Config{URL: a + "," + b, MinBackoff: time.Millisecond}, func(ctx context.Context, conn *amqp.Connection) error {
		seen = append(seen, conn.Config.Vhost)
		if len(seen) == 3 {
			return errors.New("enough") // connection still open: Run returns this
		}
		conn.Close() // as a node's death would
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil || err.Error() != "enough" {
		t.Fatalf("Run: %v", err)
	}
	want := []string{vhostOf(t, a), vhostOf(t, b), vhostOf(t, a)}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("sessions on %v, want %v", seen, want)
	}
}
