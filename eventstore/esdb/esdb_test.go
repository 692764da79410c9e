package esdb_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/esdb"
	"github.com/stacksync-es/syncservice/eventstore/storetest"
)

// serverURL returns EVENTSTORE_URL (e.g. esdb://localhost:2113?tls=false) or skips: no
// EventStoreDB server runs on the development machines, so this skip is allowed even
// under CI=true. docker compose up kurrentdb provides one.
func serverURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("EVENTSTORE_URL")
	if u == "" {
		t.Skip("EVENTSTORE_URL not set: EventStoreDB conformance tests skipped")
	}
	return u
}

// testLogger routes logs to t.Log until the test ends (the client may log from its own
// goroutines after that, which t.Log would not allow).
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// open returns a store whose streams carry a fresh prefix: the server is shared by every
// test and run, so the prefix gives each store an empty namespace of its own, both for
// its streams and for the global order it reads.
func open(t *testing.T) *esdb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := esdb.Open(ctx, esdb.Config{
		URL:          serverURL(t),
		Logger:       testLogger(t),
		StreamPrefix: "storetest-" + uuid.NewString() + "-",
	})
	if err != nil {
		t.Fatalf("open %s: %v", os.Getenv("EVENTSTORE_URL"), err)
	}
	return s
}

func TestConformance(t *testing.T) {
	serverURL(t)
	storetest.Run(t, func(t *testing.T) eventstore.Store { return open(t) })
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  esdb.Config
		ok   bool
	}{
		{"minimal", esdb.Config{URL: "esdb://localhost:2113?tls=false"}, true},
		{"prefix", esdb.Config{URL: "esdb://localhost:2113?tls=false", StreamPrefix: "prod-"}, true},
		{"no url", esdb.Config{}, false},
		{"bad scheme", esdb.Config{URL: "http://localhost:2113"}, false},
		{"system prefix", esdb.Config{URL: "esdb://localhost:2113", StreamPrefix: "$x"}, false},
		{"negative window", esdb.Config{URL: "esdb://localhost:2113", DedupWindow: -1}, false},
		{"read page 1", esdb.Config{URL: "esdb://localhost:2113", ReadPage: 1}, false},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestOpenUnreachable needs no server: a closed port fails Open with a transient error
// within the caller's deadline.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	_, err := esdb.Open(ctx, esdb.Config{URL: "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=2&discoveryInterval=10", Logger: testLogger(t)})
	if err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	if !eventstore.Transient(err) {
		t.Fatalf("open of a closed port: %v, want a transient error", err)
	}
	if d := time.Since(began); d > 15*time.Second {
		t.Fatalf("open of a closed port took %v", d)
	}
}

// TestSystemNamesRejected needs a server: '$' streams and types would be hidden from the
// global order, so Append refuses them.
func TestSystemNamesRejected(t *testing.T) {
	s, err := esdb.Open(context.Background(), esdb.Config{URL: serverURL(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	r := eventstore.Record{ID: uuid.New(), Type: "T", Data: []byte("{}")}
	if _, err := s.Append(ctx, "$sys-"+uuid.NewString(), eventstore.Any(), r); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("append to a $ stream: %v, want ErrInvalidAppend", err)
	}
	r.Type = "$T"
	if _, err := s.Append(ctx, "user-"+uuid.NewString(), eventstore.Any(), r); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("append of a $ type: %v, want ErrInvalidAppend", err)
	}
}
