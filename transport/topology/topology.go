// Package topology owns the names and declarations of the broker objects of PROTOCOL.md
// §1: the RPC exchange and request queue, the per-workspace and per-user fan-out
// exchanges, and the durable per-device event queues with their bindings. Every
// declaration here is idempotent, so a server may repeat it after any reconnect.
package topology

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Fixed names of PROTOCOL.md §1.
const (
	RPCExchange  = "rpc_global_exchange"
	RequestQueue = "ISyncService"
)

// Event queue defaults (PROTOCOL.md §1).
const (
	DefaultQueueExpiry    = 7 * 24 * time.Hour
	DefaultQueueMaxLength = 10000
)

// EventExchange names the fan-out exchange of a workspace or user id.
func EventExchange(id uuid.UUID) string { return "multi#" + id.String() }

// DeviceQueue names a device's durable event queue.
func DeviceQueue(user, device uuid.UUID) string {
	return "events." + user.String() + "." + device.String()
}

// DeclareRPC declares the request exchange and queue and binds them; requestQueue is
// normally RequestQueue (tests may isolate themselves with another name). The queue is
// a classic, non-durable one (a single broker).
func DeclareRPC(ch *amqp.Channel, requestQueue string) error {
	return DeclareRPCQueue(ch, requestQueue, false)
}

// DeclareRPCQueue is DeclareRPC with the choice of a quorum queue (on a cluster: it is
// replicated on a majority of the nodes and outlives any one of them). A quorum queue is
// always durable; on a broker that already holds the queue as the other type, the
// declaration fails (PRECONDITION_FAILED): the queue has to be deleted first.
func DeclareRPCQueue(ch *amqp.Channel, requestQueue string, quorum bool) error {
	if err := ch.ExchangeDeclare(RPCExchange, amqp.ExchangeDirect, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", RPCExchange, err)
	}
	var args amqp.Table
	if quorum {
		args = amqp.Table{"x-queue-type": "quorum"}
	}
	if _, err := ch.QueueDeclare(requestQueue, quorum, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s: %w", requestQueue, err)
	}
	if err := ch.QueueBind(requestQueue, requestQueue, RPCExchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s: %w", requestQueue, err)
	}
	return nil
}

// DeclareEventExchange declares the fan-out exchange of a workspace or user.
func DeclareEventExchange(ch *amqp.Channel, id uuid.UUID) error {
	name := EventExchange(id)
	if err := ch.ExchangeDeclare(name, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return nil
}

// QueueOptions bound a device event queue.
type QueueOptions struct {
	Expiry    time.Duration // unused queues are deleted after this; default 7 days
	MaxLength int           // oldest events are dropped beyond this; default 10,000
	// Quorum makes device event queues (and the request queue, where the RPC server
	// declares it) quorum queues, replicated across a cluster's nodes. RabbitMQ 3.10's
	// quorum queues keep every argument of PROTOCOL.md §1: x-expires, x-max-length and
	// x-overflow=drop-head (checked by TestClusterQuorumQueueArguments).
	Quorum bool
}

func (o QueueOptions) args() amqp.Table {
	if o.Expiry <= 0 {
		o.Expiry = DefaultQueueExpiry
	}
	if o.MaxLength <= 0 {
		o.MaxLength = DefaultQueueMaxLength
	}
	t := amqp.Table{
		"x-expires":    int64(o.Expiry / time.Millisecond),
		"x-max-length": int64(o.MaxLength),
		"x-overflow":   "drop-head",
	}
	if o.Quorum {
		t["x-queue-type"] = "quorum"
	}
	return t
}

// DeclareDeviceQueue declares a device's event queue and binds it to the user's exchange
// and to the exchange of every workspace in workspaces (declaring those exchanges).
func DeclareDeviceQueue(ch *amqp.Channel, user, device uuid.UUID, workspaces []uuid.UUID, opts QueueOptions) error {
	q := DeviceQueue(user, device)
	if _, err := ch.QueueDeclare(q, true, false, false, false, opts.args()); err != nil {
		return fmt.Errorf("declare queue %s: %w", q, err)
	}
	for _, id := range append([]uuid.UUID{user}, workspaces...) {
		if err := Bind(ch, user, device, id); err != nil {
			return err
		}
	}
	return nil
}

// Bind binds a device's queue to the exchange of a workspace (or of the user),
// declaring the exchange first.
func Bind(ch *amqp.Channel, user, device, exchangeOf uuid.UUID) error {
	if err := DeclareEventExchange(ch, exchangeOf); err != nil {
		return err
	}
	q := DeviceQueue(user, device)
	if err := ch.QueueBind(q, "", EventExchange(exchangeOf), false, nil); err != nil {
		return fmt.Errorf("bind %s to %s: %w", q, EventExchange(exchangeOf), err)
	}
	return nil
}

// Unbind removes a device queue's binding to a workspace's exchange. Unbinding a queue
// or exchange that does not exist closes the channel with a 404 in AMQP; callers use a
// throwaway channel or check existence first.
func Unbind(ch *amqp.Channel, user, device, workspace uuid.UUID) error {
	q := DeviceQueue(user, device)
	if err := ch.QueueUnbind(q, "", EventExchange(workspace), nil); err != nil {
		return fmt.Errorf("unbind %s from %s: %w", q, EventExchange(workspace), err)
	}
	return nil
}

// Marker is a non-durable exchange that tells whether the broker still holds the
// server's non-durable objects (PROTOCOL.md §1: the multi# exchanges and with them every
// binding of the durable device queues). A broker restart deletes it together with them.
// The membership binder (package notify) declares it only after it has restored every
// binding it knows of, so a publisher that finds it may trust the bindings; a publisher
// that does not find it waits. Devices may not declare it: their configure permission
// (PROTOCOL.md §6) covers only their reply queues.
const Marker = "syncservice.topology"

// DeclareMarker declares the Marker exchange (fanout, durable=false, auto_delete=false;
// nothing is ever published to it).
func DeclareMarker(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(Marker, amqp.ExchangeFanout, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", Marker, err)
	}
	return nil
}

// MarkerExists reports whether the Marker exchange exists, with a passive declare on a
// channel of its own (the broker closes a channel on a 404).
func MarkerExists(conn *amqp.Connection) (bool, error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("check exchange %s: open channel: %w", Marker, err)
	}
	defer ch.Close()
	err = ch.ExchangeDeclarePassive(Marker, amqp.ExchangeFanout, false, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return false, nil
	default:
		return false, fmt.Errorf("check exchange %s: %w", Marker, err)
	}
}

// WithDefaults returns o with the defaults of PROTOCOL.md §1 in place of unset fields.
func (o QueueOptions) WithDefaults() QueueOptions {
	if o.Expiry <= 0 {
		o.Expiry = DefaultQueueExpiry
	}
	if o.MaxLength <= 0 {
		o.MaxLength = DefaultQueueMaxLength
	}
	return o
}

// DeclareQueue declares a device's event queue with the arguments DeclareDeviceQueue
// gives it, and binds nothing.
func DeclareQueue(ch *amqp.Channel, user, device uuid.UUID, opts QueueOptions) error {
	q := DeviceQueue(user, device)
	if _, err := ch.QueueDeclare(q, true, false, false, false, opts.args()); err != nil {
		return fmt.Errorf("declare queue %s: %w", q, err)
	}
	return nil
}
