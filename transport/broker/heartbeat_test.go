package broker

import (
	"context"
	"encoding/binary"
	"errors"
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
// heartbeater intervals (1.5 heartbeats), by the read deadline the vendored amqp091's
// reader moves (PATCHES.md), and works until then. It fails if the reader never moves
// the deadline (the connection then stays open) or moves it too far.
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

// watchedConn is a TCP connection to the broker that records the read deadlines
// amqp091 sets on it, the deadline in force at the start of each read, and the
// heartbeat frames written.
type watchedConn struct {
	net.Conn
	mu         sync.Mutex
	deadline   time.Time // the read deadline in force
	moves      int       // read deadlines set
	reads      []watchedRead
	out        []byte // written, not yet parsed into frames
	header     bool   // the protocol header was written
	heartbeats int    // heartbeat frames written
}

type watchedRead struct{ start, deadline time.Time }

func (c *watchedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline, c.moves = t, c.moves+1
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *watchedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline, c.moves = t, c.moves+1
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *watchedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.reads = append(c.reads, watchedRead{time.Now(), c.deadline})
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// Write parses what it writes into AMQP frames (type, channel, size, payload, end
// byte) after the 8-byte protocol header, counting the heartbeats (type 8).
func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, p[:n]...)
	if !c.header && len(c.out) >= 8 {
		c.out, c.header = c.out[8:], true
	}
	for c.header && len(c.out) >= 7 {
		end := 7 + int(binary.BigEndian.Uint32(c.out[3:7])) + 1
		if len(c.out) < end {
			break
		}
		if c.out[0] == 8 {
			c.heartbeats++
		}
		c.out = c.out[end:]
	}
	return n, err
}

// snapshot returns the deadlines moved, the reads and the heartbeats written so far.
func (c *watchedConn) snapshot() (moves int, reads []watchedRead, heartbeats int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.moves, append([]watchedRead(nil), c.reads...), c.heartbeats
}

// dialWatched opens a connection with amqp091 itself (as dialAMQP does) over a
// watchedConn, proposing heartbeat hb (RabbitMQ's 60 s is longer, so hb holds).
func dialWatched(t *testing.T, hb time.Duration) (*amqp.Connection, *amqp.Channel, *watchedConn) {
	t.Helper()
	var wc *watchedConn
	conn, err := amqp.DialConfig(testenv.AMQPURL(t), amqp.Config{
		Heartbeat: hb,
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := amqp.DefaultDial(dialTimeout)(network, addr)
			if err != nil {
				return nil, err
			}
			wc = &watchedConn{Conn: c}
			return wc, nil
		},
	})
	if err != nil {
		testenv.Missing(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { conn.Close() })
	if got := conn.Config.Heartbeat; got != hb {
		t.Fatalf("negotiated heartbeat %v, want %v", got, hb)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return conn, ch, wc
}

// The vendored amqp091's reader moves the read deadline at most once per second
// (PATCHES.md), not after every frame: over 400 round trips, each a frame read, the
// deadline moved at most once per second elapsed (+2). Upstream amqp091 moves it
// after every frame, from its heartbeat goroutine (a wake-up per frame), so this
// fails without the patch.
func TestReadDeadlineMovesAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	_, ch, wc := dialWatched(t, time.Second)
	moves0, reads0, _ := wc.snapshot()
	start := time.Now()
	const trips = 400
	for range trips {
		if err := ch.Qos(1, 0, false); err != nil { // basic.qos, basic.qos-ok
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	moves, reads, _ := wc.snapshot()
	if n := len(reads) - len(reads0); n < trips/2 {
		t.Fatalf("%d reads over %d round trips, want at least %d", n, trips, trips/2)
	}
	if got, most := moves-moves0, int(elapsed/time.Second)+2; got > most {
		t.Errorf("read deadline moved %d times over %d round trips in %v, want at most %d (once a second)", got, trips, elapsed, most)
	}
}

// Every read after the handshake has a read deadline, and at least the whole timeout
// (three heartbeater intervals: 1.5 s with a 1 s heartbeat) before it, even one that
// starts just before the next move of the deadline: the reader sets it timeout + 1 s
// ahead (the margin of e5a6ac5, now in the vendored amqp091). Requests every 130 ms
// for 4 s put reads all over the second between two moves. A deadline only timeout
// ahead leaves such reads up to 1 s less, and fails this.
func TestEveryReadHasTheTimeout(t *testing.T) {
	t.Parallel()
	_, ch, wc := dialWatched(t, time.Second)
	_, reads0, _ := wc.snapshot()
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(130 * time.Millisecond) {
		if err := ch.Qos(1, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	_, reads, _ := wc.snapshot()
	reads = reads[len(reads0):]
	if len(reads) < 20 {
		t.Fatalf("%d reads in 4 s, want at least 20", len(reads))
	}
	// The tolerance covers the time between the reader's look at the clock and the
	// read's start (microseconds, far more on a loaded CI machine under -race); a
	// deadline without the margin leaves some read ~0.5 s, below timeout-tolerance.
	const timeout, tolerance = 1500 * time.Millisecond, 500 * time.Millisecond
	least := time.Duration(1<<63 - 1)
	for i, r := range reads {
		if r.deadline.IsZero() {
			t.Fatalf("read %d of %d has no deadline: a silent broker would go unnoticed", i, len(reads))
		}
		least = min(least, r.deadline.Sub(r.start))
	}
	if least < timeout-tolerance {
		t.Errorf("a read had %v before its deadline, want at least %v", least, timeout)
	}
	t.Logf("%d reads, the least time before a deadline %v", len(reads), least)
}

// The heartbeat goroutine learns of the frames written without a wake-up per frame
// (the vendored amqp091 notes the last one's time in an atomic, PATCHES.md), and
// still keeps upstream's rule: with a 5 s heartbeat it looks every 2.5 s and sends a
// heartbeat if nothing was written for 1.5 s. A connection writing every 100 ms for
// 5 s sends none; one left idle sends one (within 4 s).
func TestHeartbeatsOnlyWhenIdle(t *testing.T) {
	t.Parallel()
	_, ch, wc := dialWatched(t, 5*time.Second)
	_, _, hb0 := wc.snapshot()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := ch.Qos(1, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	_, _, hb1 := wc.snapshot()
	if hb1 != hb0 {
		t.Errorf("%d heartbeats sent while writing every 100 ms, want none", hb1-hb0)
	}
	testenv.Eventually(t, 15*time.Second, func() error { // due within 4 s of going idle
		if _, _, hb2 := wc.snapshot(); hb2 == hb1 {
			return errors.New("no heartbeat sent while idle")
		}
		return nil
	})
}
