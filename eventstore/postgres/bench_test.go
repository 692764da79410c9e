package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// payload is a ~1 KiB JSON record body, the size of a small commit event.
var payload = func() []byte {
	b := []byte(`{"items":[`)
	for i := 0; len(b) < 1000; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"%s","version":%d}`, uuid.New(), i)
	}
	return append(b, "]}"...)
}()

func benchStore(b *testing.B, maxConns int32) *postgres.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, postgres.Config{DSN: testenv.PostgresDSN(b), MaxConns: maxConns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// runAppenders runs b.N operations spread over conc goroutines and reports events/s,
// operations per second (as unit) and latency percentiles. op(i) performs operation i and returns how many events it
// wrote.
func runAppenders(b *testing.B, conc int, unit string, op func(ctx context.Context, i int64) (int, error)) {
	ctx := context.Background()
	var next, events atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	b.ResetTimer()
	start := time.Now()
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				n, err := op(ctx, i)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
				events.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(events.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkAppend appends one ~1 KiB event per append (so per transaction) with
// expected version Any, into 1 stream or spread over 1,000 streams, from 1, 16 or 64
// concurrent appenders sharing the store's pool (MaxConns 16, the default).
func BenchmarkAppend(b *testing.B) {
	s := benchStore(b, postgres.DefaultMaxConns)
	for _, streams := range []int{1, 1000} {
		for _, conc := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("streams=%d/appenders=%d", streams, conc), func(b *testing.B) {
				prefix := "bench-" + uuid.NewString()[:8] + "-"
				runAppenders(b, conc, "appends/s", func(ctx context.Context, i int64) (int, error) {
					r := eventstore.Record{ID: uuid.New(), Type: "Committed", Data: payload}
					_, err := s.Append(ctx, fmt.Sprintf("%s%d", prefix, i%int64(streams)), eventstore.Any(), r)
					return 1, err
				})
			})
		}
	}
}

// BenchmarkReadAll reads 100,000 events (~1 KiB each) in the global order, in pages of
// 1,000 as a subscription does; one op is one full pass.
func BenchmarkReadAll(b *testing.B) {
	const total, perAppend, page = 100_000, 100, 1000
	s := benchStore(b, 8)
	ctx := context.Background()
	var g sync.WaitGroup
	var failed atomic.Value
	for w := range 8 {
		g.Add(1)
		go func() {
			defer g.Done()
			for i := w; i < total/perAppend; i += 8 {
				rs := make([]eventstore.Record, perAppend)
				for j := range rs {
					rs[j] = eventstore.Record{ID: uuid.New(), Type: "Committed", Data: payload}
				}
				if _, err := s.Append(ctx, fmt.Sprintf("ws-%d", i%1000), eventstore.Any(), rs...); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	g.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("events=%d/page=%d", total, page), func(b *testing.B) {
		read := 0
		start := time.Now()
		for range b.N {
			from := eventstore.Start
			n := 0
			for n < total {
				evs, err := s.ReadAll(ctx, from, page)
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) == 0 {
					// Not yet below the horizon (another transaction in the cluster is open).
					time.Sleep(time.Millisecond)
					continue
				}
				n += len(evs)
				from = evs[len(evs)-1].Position
			}
			read += n
		}
		b.ReportMetric(float64(read)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkAppendBatch is group commit: each op is one AppendBatch of size appends of
// one ~1 KiB event each, to different streams (of 1,000), from 1 or 4 concurrent
// callers. Compare its events/s with BenchmarkAppend/streams=1000.
func BenchmarkAppendBatch(b *testing.B) {
	s := benchStore(b, postgres.DefaultMaxConns)
	for _, size := range []int{16, 64} {
		for _, conc := range []int{1, 4} {
			b.Run(fmt.Sprintf("batch=%d/callers=%d", size, conc), func(b *testing.B) {
				prefix := "bench-" + uuid.NewString()[:8] + "-"
				runAppenders(b, conc, "batches/s", func(ctx context.Context, i int64) (int, error) {
					batch := make([]eventstore.StreamAppend, size)
					for j := range batch {
						batch[j] = eventstore.StreamAppend{
							Stream:   fmt.Sprintf("%s%d", prefix, (i*int64(size)+int64(j))%1000),
							Expected: eventstore.Any(),
							Records:  []eventstore.Record{{ID: uuid.New(), Type: "Committed", Data: payload}},
						}
					}
					for _, r := range s.AppendBatch(ctx, batch) {
						if r.Err != nil {
							return 0, r.Err
						}
					}
					return size, nil
				})
			})
		}
	}
}
