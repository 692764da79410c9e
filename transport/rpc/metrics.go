package rpc

import "time"

// Metrics receives the server's measurements; the process wiring adapts it to its
// metrics system (cmd/syncd: Prometheus counters by method and code, a latency
// histogram, refused attempts = the InvalidRequest, Unauthorized and Busy codes).
// Implementations must be safe for concurrent use and must not block.
type Metrics interface {
	// Request is called once per handled request with the method ("unknown" for an
	// unknown method, "invalid" for a body that is not a request envelope), the result
	// code ("OK" on success, else the wire error code; "Abandoned" for a request cut off
	// by a shutdown, left unacked for redelivery) and the time from taking the request
	// to acking it.
	Request(method, code string, d time.Duration)
}

type noMetrics struct{}

func (noMetrics) Request(string, string, time.Duration) {}
