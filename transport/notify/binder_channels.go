package notify

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/transport/topology"
)

// channels hands out a channel on conn, replacing it after the broker closed it (as it
// does on a 404 for a missing queue or exchange).
type channels struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	opts topology.QueueOptions
}

func (c *channels) get() (*amqp.Channel, error) {
	if c.ch != nil && !c.ch.IsClosed() {
		return c.ch, nil
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	c.ch = ch
	return ch, nil
}

func (c *channels) close() {
	if c.ch != nil {
		_ = c.ch.Close()
		c.ch = nil
	}
}

// amqpCode reports whether err is the broker's answer code.
func amqpCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// notFound reports the broker's 404: the queue (or exchange) does not exist.
func notFound(err error) bool { return amqpCode(err, amqp.NotFound) }

// queueExists checks for the device's queue with a passive declare.
func (c *channels) queueExists(user, device uuid.UUID) (bool, error) {
	ch, err := c.get()
	if err != nil {
		return false, err
	}
	q := topology.DeviceQueue(user, device)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		if notFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("check queue %s: %w", q, err)
	}
	return true, nil
}

// declareQueue declares the device's queue with c.opts. A queue that exists with other
// arguments (an operator changed the limits) is kept as it is, as the RPC server does.
func (c *channels) declareQueue(user, device uuid.UUID) (bool, error) {
	ch, err := c.get()
	if err != nil {
		return false, err
	}
	err = topology.DeclareQueue(ch, user, device, c.opts)
	if amqpCode(err, amqp.PreconditionFailed) {
		return c.queueExists(user, device)
	}
	return err == nil, err
}

// bindAll binds the device's existing queue to the exchange of every id (declaring the
// exchanges) and returns how many bindings it made; it stops without error if the queue
// vanished in between (expired).
func (c *channels) bindAll(user, device uuid.UUID, ids []uuid.UUID) (int, error) {
	ch, err := c.get()
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := topology.Bind(ch, user, device, id); err != nil {
			if notFound(err) {
				return i, nil
			}
			return i, err
		}
	}
	return len(ids), nil
}

// bind binds the device's queue to the workspace's exchange if the queue exists.
func (c *channels) bind(user, device, workspace uuid.UUID) error {
	exists, err := c.queueExists(user, device)
	if err != nil || !exists {
		return err // no queue: updateDevice will declare and bind it
	}
	_, err = c.bindAll(user, device, []uuid.UUID{workspace})
	return err
}

// deleteQueue deletes the device's queue; one that does not exist is already gone.
func (c *channels) deleteQueue(user, device uuid.UUID) error {
	ch, err := c.get()
	if err != nil {
		return err
	}
	q := topology.DeviceQueue(user, device)
	if _, err := ch.QueueDelete(q, false, false, false); err != nil && !notFound(err) {
		return fmt.Errorf("delete queue %s: %w", q, err)
	}
	return nil
}

// unbind removes the device queue's binding to the workspace's exchange; a queue or
// exchange that does not exist has no binding to remove.
func (c *channels) unbind(user, device, workspace uuid.UUID) error {
	ch, err := c.get()
	if err != nil {
		return err
	}
	if err := topology.Unbind(ch, user, device, workspace); err != nil && !notFound(err) {
		return err
	}
	return nil
}
