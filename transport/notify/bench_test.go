package notify

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
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

// BenchmarkRestore measures the binder restoring the bindings of b.N device queues (one
// per user, each user a member of two workspaces: three bindings per queue) after the
// broker lost them. Run with e.g. -bench Restore -benchtime 2000x.
func BenchmarkRestore(b *testing.B) {
	e := newEnv(b)
	bd, err := NewBinder(BinderConfig{DSN: e.dsn, AMQPURL: e.amqp}, e.store)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctxT(b), e.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := Migrate(ctxT(b), pool); err != nil {
		b.Fatal(err)
	}
	bd.f.db = pool
	conn, err := amqp.Dial(e.amqp)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	ws := []uuid.UUID{uuid.New(), uuid.New()}
	batch := &pgx.Batch{}
	for i := 0; i < b.N; i++ {
		user, dev := uuid.New(), uuid.New()
		if err := topology.DeclareQueue(ch, user, dev, topology.QueueOptions{}); err != nil {
			b.Fatal(err)
		}
		batch.Queue(`INSERT INTO binder_devices (binder, user_id, device) VALUES ('binder', $1, $2)`, user, dev)
		for _, w := range ws {
			batch.Queue(`INSERT INTO binder_members (binder, workspace, user_id) VALUES ('binder', $1, $2)`, w, user)
		}
	}
	if err := pool.SendBatch(ctxT(b), batch).Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	began := time.Now()
	if err := bd.restore(ctxT(b), conn); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "queues/s")
	if ok, err := topology.MarkerExists(conn); err != nil || !ok {
		b.Fatalf("marker not declared after the restore: %v %v", ok, err)
	}
}
