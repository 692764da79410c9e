package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
)

// BenchmarkTwoStreams writes one record to each of two fresh streams per operation,
// as one atomic AppendMulti (two round trips, one transaction) or as two Appends (one
// round trip and one commit each, not atomic): the price of a share's atomicity at
// the storage level. Alternate the two in one run:
//
//	go test -run '^$' -bench 'TwoStreams' -count 3 ./eventstore/postgres/
func BenchmarkTwoStreams(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("multi/conc=%d", conc), func(b *testing.B) {
			s := benchStore(b, 16)
			runAppenders(b, conc, "ops", func(ctx context.Context, i int64) (int, error) {
				_, err := s.AppendMulti(ctx, twoStreams(i))
				return 2, err
			})
		})
		b.Run(fmt.Sprintf("two-appends/conc=%d", conc), func(b *testing.B) {
			s := benchStore(b, 16)
			runAppenders(b, conc, "ops", func(ctx context.Context, i int64) (int, error) {
				for _, a := range twoStreams(i) {
					if _, err := s.Append(ctx, a.Stream, a.Expected, a.Records...); err != nil {
						return 0, err
					}
				}
				return 2, nil
			})
		})
	}
}

func twoStreams(i int64) []eventstore.StreamAppend {
	out := make([]eventstore.StreamAppend, 2)
	for k := range out {
		out[k] = eventstore.StreamAppend{Stream: fmt.Sprintf("bench-%s-%d-%d", uuid.NewString()[:8], i, k),
			Expected: eventstore.NoStream(), Records: []eventstore.Record{{ID: uuid.New(), Type: "Bench", Data: payload}}}
	}
	return out
}
