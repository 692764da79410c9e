package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// BenchmarkPublish measures the notifier catching up on b.N stored commits spread over
// 10 workspaces, each with a bound queue: read, encode, publish, confirm, checkpoint.
func BenchmarkPublish(b *testing.B) {
	e := newEnv(b)
	var wss []uuid.UUID
	for i := 0; i < 10; i++ {
		ws := uuid.New()
		wss = append(wss, ws)
		listen(b, e.amqp, ws)
	}
	var last uuid.UUID
	for i := 0; i < b.N; i++ {
		rec, _ := commit(b, e.store, wss[i%len(wss)], int64(i/len(wss)+1))
		last = rec.ID
	}
	pos := positionOf(b, e.store, last)
	cfg := fastConfig(b, e)
	cfg.Logger = nil
	n, err := New(cfg, e.store)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	began := time.Now()
	start(b, n.Run)
	testenv.Eventually(b, 5*time.Minute, func() error {
		if st := n.Status(); st.Position != pos {
			return fmt.Errorf("at %v of %v", st.Position, pos)
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "commits/s")
}
