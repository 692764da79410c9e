//go:build cluster

package testenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The pair itself: a row committed on the primary (synchronously replicated) is on the
// promoted standby after the primary is SIGKILLed, and the multi-host DSN finds it there.
func TestPGFailoverPair(t *testing.T) {
	primary, standby := PGPairPorts()
	p := StartPGPair(t, filepath.Join(PGPairRoot(), "pair"), primary, standby)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Exec(p.Primary, `CREATE TABLE acked (n int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, p.MultiHostDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.Exec(ctx, `INSERT INTO acked VALUES ($1)`, i); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
	p.Failover()
	c, err = pgx.Connect(ctx, p.MultiHostDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	var port uint16
	if err := c.QueryRow(ctx, `SELECT count(*), inet_server_port() FROM acked`).Scan(&n, &port); err != nil {
		t.Fatal(err)
	}
	if n != 100 || int(port) != p.Standby.Port {
		t.Fatalf("after failover: %d rows on port %d, want 100 on %d", n, port, p.Standby.Port)
	}
}
