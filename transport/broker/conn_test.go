package broker

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// freezer is a TCP proxy to addr that can stop forwarding (a broker that hangs, or a
// network that drops everything, without closing the connection).
type freezer struct {
	l      net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, addr string) *freezer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: l}
	t.Cleanup(f.close)
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, in, out)
			f.mu.Unlock()
			go f.pipe(in, out)
			go f.pipe(out, in)
		}
	}()
	return f
}

// close stops the proxy and closes every connection through it.
func (f *freezer) close() {
	f.l.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

// pipe copies src to dst until frozen; then it reads on and drops what it reads.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if !f.frozen.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// A connection whose broker goes silent is closed once nothing arrived for three
// heartbeat intervals, as amqp091 closes its own (the read deadline dialAMQP's
// transport keeps), and works until then.
func TestSilentBrokerClosesTheConnection(t *testing.T) {
	live := testenv.AMQPURL(t)
	u, err := url.Parse(live)
	if err != nil {
		t.Fatal(err)
	}
	old := heartbeat
	heartbeat = time.Second // proposed; the broker's (60 s by default) is longer, so 1 s holds
	t.Cleanup(func() { heartbeat = old })
	f := newFreezer(t, u.Host)
	u.Host = f.l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Dial(ctx, Config{URL: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		f.close() // first: closing a connection waits for the broker's answer
		conn.Close()
	}()
	if got := conn.Config.Heartbeat; got != time.Second {
		t.Fatalf("negotiated heartbeat %v, want 1s", got)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// Alive while the broker answers, for longer than the deadline (1.5 s): the reader
	// moves it on as heartbeats arrive.
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	idle := time.After(4 * time.Second)
	for done := false; !done; {
		select {
		case err := <-closed:
			t.Fatalf("connection closed while the broker answered: %v", err)
		case <-idle:
			done = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := ch.Close(); err != nil { // a round trip through the proxy
		t.Fatalf("close a channel: %v", err)
	}
	f.frozen.Store(true)
	start := time.Now()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("connection closed without an error")
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("closed %v after the broker went silent, want 1.5 s to 3.5 s", d)
		}
	case <-ctx.Done():
		t.Fatal("connection to a silent broker still open after 30 s")
	}
}

// The transport is not a net.Conn (no SetReadDeadline): otherwise amqp091 hands it to
// its heartbeat goroutine after every frame it reads.
func TestReaderConnHidesDeadlines(t *testing.T) {
	var rc io.ReadWriteCloser = &readerConn{}
	if _, ok := rc.(interface{ SetReadDeadline(time.Time) error }); ok {
		t.Error("readerConn has SetReadDeadline: amqp091's reader would wake its heartbeater per frame")
	}
}

// A server that accepts the TCP connection but never answers the AMQP handshake fails
// the dial within dialTimeout (10 s), as amqp.DefaultDial bounds it.
func TestSilentHandshakeTimesOut(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn // read nothing, answer nothing; closed with the listener
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), Config{URL: "amqp://guest:guest@" + l.Addr().String() + "/"})
	if err == nil {
		t.Fatal("dial of a silent server succeeded")
	}
	if d := time.Since(start); d > dialTimeout+2*time.Second {
		t.Errorf("dial of a silent server failed after %v, want about %v", d, dialTimeout)
	}
}

// deadlineConn records the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	deadlines []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return c.Conn.SetReadDeadline(t)
}

// Every read has the whole timeout ahead of it, even one that starts just before the
// next refresh of the deadline: the deadline set is timeout + deadlineRefresh ahead.
func TestReaderConnLeavesEveryReadTheTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := &deadlineConn{Conn: a}
	rc := &readerConn{conn: dc}
	const timeout = 1500 * time.Millisecond
	rc.timeout.Store(int64(timeout))
	go func() { _, _ = b.Write([]byte("x")) }()
	before := time.Now()
	if _, err := rc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if len(dc.deadlines) != 1 {
		t.Fatalf("%d deadlines set, want 1", len(dc.deadlines))
	}
	// The next refresh comes deadlineRefresh later at the latest: a read starting just
	// before it must still have the whole timeout.
	if got, want := dc.deadlines[0], before.Add(deadlineRefresh+timeout); got.Before(want) {
		t.Fatalf("read deadline %v after the refresh, want at least %v", dc.deadlines[0].Sub(before), deadlineRefresh+timeout)
	}
}
