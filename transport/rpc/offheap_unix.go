//go:build unix

package rpc

import "syscall"

// anonymousMappings says whether mapBytes maps (true on every unix system).
const anonymousMappings = true

// mapBytes maps n bytes of anonymous memory, nil if that fails.
func mapBytes(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	return b
}

func unmap(b []byte) { _ = syscall.Munmap(b) } // fails only for a slice it did not map
