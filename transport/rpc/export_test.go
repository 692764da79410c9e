package rpc

// ChangesPatched returns how many getChanges misses s answered by patching an older
// cached reply.
func ChangesPatched(s *Server) int64 { return s.changes.stats().patched }
