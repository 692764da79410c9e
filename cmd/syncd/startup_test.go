package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// What waiting can cure and what it cannot.
func TestUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "57P03"}, true}, // the database system is starting up
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "25006"}, true}, // a standby, not yet promoted
		{&pgconn.PgError{Code: "08006"}, true},
		{fmt.Errorf("open: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), true},
		{&pgconn.PgError{Code: "28P01"}, false}, // password authentication failed
		{&pgconn.PgError{Code: "42P01"}, false}, // a migration's own error
		{errors.New("parse -pg: cannot parse"), false},
		{context.Canceled, false},
	} {
		if got := unavailable(c.err); got != c.want {
			t.Errorf("unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// proxy forwards connections from a listener it opens only when open is called, so
// that until then the address refuses connections, as a database that is down does.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	l            net.Listener
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), target: target}
	l.Close() // refused until open
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.l != nil {
			p.l.Close()
		}
	})
	return p
}

func (p *proxy) open(t *testing.T) {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Errorf("reopen %s: %v", p.addr, err)
		return
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(s, c) }()
				_, _ = io.Copy(c, s)
			}()
		}
	}()
}

// Start-up while the database is down: syncd keeps trying (logging each attempt, /readyz
// naming what it waits for) and opens the node once the database answers, instead of
// exiting at the first refused connection.
func TestStartupWaitsForDatabase(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	u.Host = px.addr
	cfg, err := parseConfig([]string{"-pg", u.String(), "-create-db=false", "-http", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	hs, err := listenHTTP("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown(context.Background())
	attempts := make(chan string, 100)
	waiting := func(s string) { hs.setWaiting(s); attempts <- s }
	type result struct {
		n   *node
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := openNodeRetrying(context.Background(), cfg, log, waiting)
		done <- result{n, err}
	}()
	for i := 0; i < 3; i++ { // refused three times: still trying, not exited
		select {
		case s := <-attempts:
			if !strings.Contains(s, "waiting for the database") {
				t.Fatalf("waiting reported %q", s)
			}
		case r := <-done:
			t.Fatalf("openNodeRetrying returned while the database was down: %v", r.err)
		}
	}
	rec := httptest.NewRecorder()
	hs.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "waiting for the database") {
		t.Fatalf("readyz while waiting: %d %q", rec.Code, rec.Body.String())
	}
	px.open(t)
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("no node 60s after the database came up")
	}
	if r.err != nil {
		t.Fatalf("openNodeRetrying: %v", r.err)
	}
	defer r.n.close()
	if err := r.n.pool.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Count(logs.String(), "database unavailable; retrying") < 3 || !strings.Contains(logs.String(), "database reachable; starting") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// An error waiting cannot cure ends start-up at once; an unavailable database ends it
// after -startup-timeout.
func TestStartupGivesUp(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cfg, err := parseConfig([]string{"-pg", "postgres://postgres@127.0.0.1:5432/x?sslmode=bogus", "-startup-timeout", "30s"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tries := 0
	if _, err := openNodeRetrying(context.Background(), cfg, log, func(string) { tries++ }); err == nil || tries > 0 {
		t.Fatalf("a DSN that does not parse: err %v after %d retries, want an error and none", err, tries)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg, err = parseConfig([]string{"-pg", "postgres://postgres@" + addr + "/x?sslmode=disable", "-startup-timeout", "500ms"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openNodeRetrying(context.Background(), cfg, log, nil); err == nil || !strings.Contains(err.Error(), "-startup-timeout") {
		t.Fatalf("a database that stays down: %v, want the start-up timeout", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
