// Package service is the application layer between the wire and the domain: it loads
// aggregate state (a bounded cache plus a catch-up read of the stream tail), asks the
// domain to decide, appends the decision with the expected stream version, retries on a
// concurrent append, and answers queries from the read models. The commits waiting for
// one workspace in a process are decided in turn and appended together (commitqueue.go). It takes requests and
// gives results and error kinds in the protocol's vocabulary (domain/protocol).
//
// It depends on small interfaces only: an eventstore.Store, a ReadModel and an
// IDAllocator. cmd wires the PostgreSQL implementations (eventstore/postgres,
// projections.Queries, internal/itemids) and runs their migrations; unit tests may wire
// in-memory ones. It must never depend on a database driver, on the projections or on
// the transport: it knows nothing of SQL, AMQP or JSON wire shapes; transport calls it.
package service

import (
	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// CommitResult is the outcome of a commit: the recorded event, and whether it is the
// original record of an earlier copy of the same request (nothing new was appended).
type CommitResult struct {
	EventID uuid.UUID // id of the stored event (the notifyCommit envelope's id)
	Event   domain.Committed
	// Position is the event's place in the store's global order, or a later place in
	// the same transaction: commits appended together (one workspace's batch) all carry
	// the position of the batch's last event, which they become visible with.
	Position eventstore.Position
	Replayed bool
}

// DeviceResult is updateDevice's outcome: the device id and the place of the event
// that recorded the registration or update in the store's global order.
type DeviceResult struct {
	ID       uuid.UUID
	Position eventstore.Position
}
