package broker

import (
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dialTimeout bounds the TCP dial and the AMQP handshake.
const dialTimeout = 10 * time.Second

// heartbeat is the heartbeat interval the connections propose (the broker may lower
// it, a URL's heartbeat option replaces it); a variable for the tests.
var heartbeat = 10 * time.Second

// dialAMQP opens an AMQP connection to u. amqp091 detects a dead broker by a read
// deadline three heartbeater intervals (1.5 heartbeats) ahead; the vendored amqp091
// (third_party/amqp091-go, PATCHES.md) moves it from its reader at most once a
// second, not from its heartbeat goroutine after every frame read, and notes frames
// written in an atomic the heartbeat goroutine reads on its ticker: no goroutine
// wake-up per frame either way.
func dialAMQP(u string, cfg amqp.Config) (*amqp.Connection, error) {
	cfg.Heartbeat, cfg.Dial = heartbeat, amqp.DefaultDial(dialTimeout)
	return amqp.DialConfig(u, cfg)
}
