package rpc

// ChangesPatched returns how many getChanges misses s answered by patching an older
// cached reply.
func ChangesPatched(s *Server) int64 { return s.changes.stats().patched }

// Every getChanges reply of this package's tests lies outside the heap (offheap.go),
// so that the tests through RabbitMQ, with the race detector, use that path; replies of
// syncd's own small workspaces stay on the heap.
func init() { offHeapMin = 1 }

// OffHeapReplyBytes is the bytes of the reply buffers mapped outside the heap.
func OffHeapReplyBytes() int64 { return offHeapBytes.Load() }
