// Package notify owns the two broker-side followers of the event store's global order,
// and the direct publisher that lets the appending process notify first:
//
//   - the Notifier publishes every Committed event as a notifyCommit event to the
//     workspace's fan-out exchange (PROTOCOL.md §2, §5): only after the event is durable,
//     at least once, in global (hence per-workspace workspaceVersion) order, never beyond
//     its horizons (the binder's checkpoint; and, for events whose append did not write
//     the read models itself, the workspace projection's checkpoint, so that reads see
//     what was notified), with publisher confirms, advancing its checkpoint only after
//     the broker confirmed every message of a batch; it skips what a Direct publisher of
//     its process got confirmed;
//   - Direct publishes a commit from the process that appended it, right after the
//     append's transaction committed, whenever the Notifier would publish it at that
//     moment, and declines (leaves it to the Notifier) otherwise;
//   - the Binder keeps device event queues bound in step with workspace membership
//     (PROTOCOL.md §1, §6): on WorkspaceCreated and MemberAdded it binds every device
//     queue of the user to the workspace's exchange, on MemberRemoved it unbinds them, on
//     DeviceRegistered/DeviceUpdated it declares the device's queue and binds it to every
//     workspace of the user. It keeps its own membership and device tables (saved with
//     its checkpoint) and, on a broker that lost its non-durable exchanges (a restart),
//     binds every known queue again before it declares the topology marker.
//
// The marker (topology.Marker) couples them: a notifier or a direct publisher publishes
// on a new broker connection only once the marker exists, so it never publishes into a workspace
// exchange whose bindings a restart took away and the binder has not restored yet.
// A deployment therefore runs a binder wherever it runs a notifier (any syncd instance
// with the binder role, on the same broker); a notifier without one waits and logs so
// (Config.SkipTopologyCheck turns the wait off, for tests of the notifier alone).
//
// Each follower keeps its own checkpoint row in PostgreSQL (table notify_checkpoints),
// runs as the single active instance of its role (internal/leader), and survives broker
// and database restarts without a process restart. Both are at-least-once: after a crash
// or outage they redo the work after their checkpoint, which consumers (devices) and the
// broker (bindings) absorb as duplicates.
//
// An event either follower can never handle (undecodable, refused by the broker
// MaxAttempts times, nacked that often over at least Config.PoisonAfter, larger than
// the broker accepts) is set aside: recorded in
// notify_set_aside (ListSetAside), logged and counted, and passed over, so that one
// event never stops every workspace. Lost connections and database failures are retried
// without limit and never set aside. Healthy reports a follower stuck past a bound.
//
// This package never writes to the event store, never decides anything about commits,
// and never publishes an event that the store has not returned from ReadAll.
package notify
