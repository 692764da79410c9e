package postgres

import (
	"cmp"
	"hash/fnv"
	"slices"
)

// Stream locks.
//
// Global readers order events by (tx_id, global_pos), where tx_id is the append
// transaction's id. For that order to keep each stream's version order, an append must
// not own a transaction id while it waits for an earlier append to the same stream: one
// that got its id first but wrote its versions after the other committed would sort
// before it. The stream row lock does not prevent that. A transaction has its id from
// its first write on, so an AppendBatch that had written one stream and then waited for
// another's row lock held an id while waiting; and a first append to a new stream
// assigns its id in the speculative insert of the stream row, before it finds the
// concurrent insert of the same row and waits for it. (An append to an existing stream
// with expected version Any, alone, waits on the row with no id: ON CONFLICT DO UPDATE
// assigns it after the wait.)
//
// So every append first takes a transaction-scoped advisory lock per stream it writes,
// pg_advisory_xact_lock, which needs no transaction id, and only then writes. The id is
// assigned after the lock is held, and the previous holder had committed before the lock
// was released, so within a stream transaction ids increase with stream versions. The
// row lock and the expected-version check stay as they were and remain the source of
// version correctness; the advisory lock only orders transaction ids. A side benefit: an
// append waiting for its stream holds no id, so it does not hold back global readers.
//
// The lock uses the two-int4 key space of advisory locks (pg_locks.objsubid 2), which
// must stay this store's own in its database: the store's schema lock and the project's
// other advisory locks (migrations, leader election, rebuilds) take single bigint keys,
// so a stream can never share a lock with a long-held session lock. The two keys are the halves of the
// 64-bit FNV-1a hash of the stream name, computed here so that every process of every
// version agrees on them. Two streams whose names hash alike share one lock: their
// appends then serialise with each other, which stays correct and only costs an
// occasional wait (among n streams about n²/2⁶⁵ pairs collide: 3·10⁻⁸ at a million). An
// AppendBatch takes all its locks in one statement, in ascending key order, before its
// first write, so batches and single appends cannot deadlock on them; and since every
// stream row is locked only by the holder of the stream's advisory lock, no append ever
// waits for a stream row lock.

// lockStreamSQL takes the advisory lock of one stream until the end of the transaction.
const lockStreamSQL = `SELECT pg_advisory_xact_lock($1::int4, $2::int4)`

// lockStreamsSQL takes the advisory locks of several streams, in the order given (the
// subquery's order feeds the aggregate), until the end of the transaction.
const lockStreamsSQL = `SELECT count(pg_advisory_xact_lock(k1, k2))
FROM (SELECT k1, k2 FROM unnest($1::int4[], $2::int4[]) WITH ORDINALITY AS u(k1, k2, ord) ORDER BY ord) AS l`

// lockKey is the two-int4 advisory lock key of a stream.
type lockKey struct{ hi, lo int32 }

// streamLockKey returns stream's advisory lock key: the halves of the 64-bit FNV-1a hash
// of its name. It must never change: processes that disagree on it would not exclude
// each other.
func streamLockKey(stream string) lockKey {
	h := fnv.New64a()
	h.Write([]byte(stream))
	v := h.Sum64()
	return lockKey{hi: int32(v >> 32), lo: int32(uint32(v))}
}

// streamLockKeys returns the distinct lock keys of streams in ascending order, as the
// two arrays lockStreamsSQL takes.
func streamLockKeys(streams []string) (his, los []int32) {
	keys := make([]lockKey, len(streams))
	for i, s := range streams {
		keys[i] = streamLockKey(s)
	}
	slices.SortFunc(keys, func(a, b lockKey) int {
		return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo))
	})
	keys = slices.Compact(keys)
	his, los = make([]int32, len(keys)), make([]int32, len(keys))
	for i, k := range keys {
		his[i], los[i] = k.hi, k.lo
	}
	return his, los
}
