//go:build unix

package broker

import (
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTripCPU is the client's CPU per round trip of one frame each way
// (basic.qos, basic.qos-ok) on a connection dialled as dialAMQP dials: with upstream
// amqp091 each frame woke the heartbeat goroutine (docs/benchmarks.md, "amqp091's
// heartbeat goroutine, patched in the library"). It reports cpu-ns/op, this process's
// user + system time per round trip (less noisy than the wall time on a shared
// machine, not free of it).
func BenchmarkRoundTripCPU(b *testing.B) {
	conn, err := dialAMQP(testenv.AMQPURL(b), amqp.Config{})
	if err != nil {
		testenv.Missing(b, "RabbitMQ", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := cpuTime(b)
	for b.Loop() {
		if err := ch.Qos(1, 0, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}
