package pgmigrate

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

func TestApplyOnceEvenConcurrently(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	files := fstest.MapFS{
		"001_a.sql": {Data: []byte(`CREATE TABLE a (n int); INSERT INTO a VALUES (1);`)},
		"002_b.sql": {Data: []byte(`INSERT INTO a VALUES (2);`)},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- Apply(ctx, pool, "t", files) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	files["003_c.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO a VALUES (3);`)}
	if err := Apply(ctx, pool, "t", files); err != nil {
		t.Fatal(err)
	}
	var n, sum int
	if err := pool.QueryRow(ctx, `SELECT count(*), sum(n) FROM a`).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 3 || sum != 6 {
		t.Fatalf("rows %d sum %d: a migration ran twice or not at all", n, sum)
	}
	bad := fstest.MapFS{"004_bad.sql": {Data: []byte(`NOT SQL`)}}
	if err := Apply(ctx, pool, "t", bad); err == nil {
		t.Fatal("a broken migration was accepted")
	}
	if err := Apply(ctx, pool, "u", fstest.MapFS{"x.sql": {Data: []byte(``)}}); err == nil {
		t.Fatal("a file without a number was accepted")
	}
}
