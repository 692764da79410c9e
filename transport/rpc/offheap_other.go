//go:build !unix

package rpc

// anonymousMappings says whether mapBytes maps: not here.
const anonymousMappings = false

// mapBytes maps nothing here: replies stay on the heap.
func mapBytes(int) []byte { return nil }

func unmap([]byte) {}
