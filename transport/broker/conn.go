package broker

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dialTimeout bounds the TCP dial and the AMQP handshake.
const dialTimeout = 10 * time.Second

// heartbeat is the heartbeat interval the connections propose (the broker may lower
// it); a variable for the tests.
var heartbeat = 10 * time.Second

// deadlineRefresh is how often, at most, a connection's reader moves its read deadline.
const deadlineRefresh = time.Second

// dialAMQP opens an AMQP connection to u over a readerConn: amqp091 detects a dead
// broker by a read deadline three heartbeat intervals ahead, and when its transport
// can take read deadlines it hands the connection to its heartbeat goroutine after
// every frame it reads, which moves the deadline: a goroutine wake-up per frame read,
// a third of syncd's wake-ups per commit (a scheduler trace of `syncctl bench
// --scenario sequential`, docs/benchmarks.md). readerConn moves the same deadline from
// the reading goroutine itself, at most once per deadlineRefresh. A URL with a query
// (heartbeat, TLS or auth options) or the amqps scheme is dialled by amqp091 itself.
func dialAMQP(u string, cfg amqp.Config) (*amqp.Connection, error) {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return nil, err
	}
	if p, err := url.Parse(u); err != nil || p.RawQuery != "" || uri.Scheme != "amqp" {
		cfg.Heartbeat, cfg.Dial = heartbeat, amqp.DefaultDial(dialTimeout)
		return amqp.DialConfig(u, cfg)
	}
	tcp, err := net.DialTimeout("tcp", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)), dialTimeout)
	if err != nil {
		return nil, err
	}
	// The handshake is bounded as amqp.DefaultDial bounds it; after it, only the
	// reader's deadline stays (amqp091 clears the write deadline of its own
	// connections too).
	if err := tcp.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		tcp.Close()
		return nil, err
	}
	rc := &readerConn{conn: tcp}
	rc.timeout.Store(int64(dialTimeout)) // until the handshake is done: its bound
	cfg.Heartbeat, cfg.Vhost, cfg.ChannelMax = heartbeat, uri.Vhost, uri.ChannelMax
	cfg.SASL = []amqp.Authentication{uri.PlainAuth()}
	cfg.FrameSize, cfg.Locale = 131072, "en_US" // amqp.DialConfig's defaults
	c, err := amqp.Open(rc, cfg)
	if err != nil {
		tcp.Close()
		return nil, err
	}
	// amqp091's own rule: a deadline covering three of the negotiated intervals
	// (half the heartbeat), none when heartbeats are off.
	rc.timeout.Store(int64(3 * c.Config.Heartbeat / 2))
	if err := tcp.SetWriteDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("clear the handshake's write deadline: %w", err)
	}
	return c, nil
}

// readerConn is the transport of a connection dialled by dialAMQP. It is an
// io.ReadWriteCloser but not a net.Conn, so that amqp091 leaves the read deadline to it:
// before a read, if deadlineRefresh has passed since it last did, it sets the read
// deadline timeout + deadlineRefresh ahead, so that every read has at least timeout. A
// read then fails, and amqp091 closes the connection, once the broker has sent nothing
// (not even a heartbeat) for timeout, as amqp091 would have it, plus at most
// 2 × deadlineRefresh. Only amqp091's reader goroutine reads.
type readerConn struct {
	conn      net.Conn
	timeout   atomic.Int64 // time.Duration; 0: no deadline
	refreshed time.Time    // when the deadline was last set; the reader's
}

func (c *readerConn) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(c.refreshed) >= deadlineRefresh {
		var deadline time.Time
		if d := time.Duration(c.timeout.Load()); d > 0 {
			// deadlineRefresh more: a read that starts just before the next refresh
			// still has the whole timeout.
			deadline = now.Add(d + deadlineRefresh)
		}
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		c.refreshed = now
	}
	return c.conn.Read(p)
}

func (c *readerConn) Write(p []byte) (int, error) { return c.conn.Write(p) }

func (c *readerConn) Close() error { return c.conn.Close() }

// LocalAddr and RemoteAddr serve amqp.Connection's methods of the same names.
func (c *readerConn) LocalAddr() net.Addr  { return c.conn.LocalAddr() }
func (c *readerConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }
