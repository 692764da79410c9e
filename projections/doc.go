// Package projections owns the read models behind the service's queries, in PostgreSQL,
// and the projectors that keep them up to date with the event store's global order:
//
//   - workspaces (schema proj_workspaces): workspaces (owner, shared, encrypted, current
//     workspaceVersion, used bytes), members (each member's own name and mount point),
//     items (the latest version of every item, tombstones included, with the workspace
//     version that stored it) and item_history (every stored version);
//   - accounts (schema proj_accounts): users and devices.
//
// Each model lives in its own schema together with its checkpoint and its migration
// record. A projector (one active per model across processes, elected by
// internal/leader) applies batches of events and saves the checkpoint in the same
// transaction, after locking it and checking it is where the projector left it, so a
// crash at any point neither loses nor double-applies an event and two writers never
// both apply a batch. Every write is also idempotent (version guards), so replaying an
// event changes nothing. Checkpoint tells other components (the notifier) how far a model
// has applied; Queries answers reads from the live models (EncodedChanges renders
// getChanges row by row with the caller's encoder, never holding the items as structs,
// or patches a kept answer with the items written since its version (changes_delta.go);
// ChangesStamp names the content of that answer for a cache).
//
// Replica (replica.go) routes the heavy reads to a hot standby once it has replayed the
// primary's WAL up to where it was when the read arrived, and to the primary otherwise, so
// that reads from a standby still see every commit notified before them.
//
// With the PostgreSQL store, appends may write the models themselves, in their own
// transaction (Inline, the store's inline hook): the projector then only moves its
// checkpoint over those events, and still applies every event appended without it.
//
// Rebuild replays the history from position 0 into a fresh schema and swaps it in
// atomically (see Rebuild for how the swap and the live projector get along); Verify
// rebuilds into scratch tables up to the live checkpoint and compares row by row. Both
// replay in bulk mode (replay.go, bulk.go): pages are decoded in parallel and applied in
// order, item versions are copied into tables without indexes, items is derived from
// them at the end and the indexes are built last. Committed events, most of any
// history, are decoded without reflection (fastdecode.go) wherever events are decoded,
// live or replayed, with the same result as domain.Decode.
//
// The package must never write to the event store or to a standby, and never publish anything (replays
// have no side effects). It keeps its write transactions short: while one holds a
// transaction id, the PostgreSQL store's global readers cannot see later commits.
package projections
