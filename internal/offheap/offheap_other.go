//go:build !unix

package offheap

const supported = false

func mapBytes(int) []byte { return nil }

func unmap([]byte) {}
