package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// -store esdb://… (or SYNC_STORE) turns inline read models and direct publishing off,
// whatever their flags say; anything but postgres or an esdb URL is refused.
func TestConfigStore(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.store != "postgres" || !c.inline || !c.directPublish {
		t.Fatalf("defaults: store %q inline %v direct %v, want postgres with both on", c.store, c.inline, c.directPublish)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flag":          {[]string{"-store", "esdb://127.0.0.1:2113?tls=false"}, nil},
		"flag over on":  {[]string{"-store", "esdb://127.0.0.1:2113?tls=false", "-inline-projection=true", "-direct-publish=true"}, nil},
		"SYNC_STORE":    {nil, map[string]string{"SYNC_STORE": "esdb://127.0.0.1:2113?tls=false"}},
		"SYNCD_STORE":   {nil, map[string]string{"SYNCD_STORE": "esdb+discover://127.0.0.1:2113?tls=false"}},
		"with a prefix": {[]string{"-store", "esdb://127.0.0.1:2113?tls=false", "-store-prefix", "team-a-"}, nil},
	} {
		c, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(c.store, "esdb") || c.inline || c.directPublish {
			t.Errorf("%s: store %q inline %v direct %v, want esdb with both off", name, c.store, c.inline, c.directPublish)
		}
	}
	for _, args := range [][]string{
		{"-store", "mysql://localhost/x"},
		{"-store", "esdb://127.0.0.1:2113?tls=false", "-store-prefix", "$sys"},
		{"-store", "esdb://127.0.0.1:2113?tls=maybe"},
	} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// syncd says that it runs differently on EventStoreDB, and a server that does not
// answer is an error start-up waits on (retried), not one that ends it.
func TestOpenEventStoreESDBUnreachable(t *testing.T) {
	c, err := parseConfig([]string{"-store", "esdb://127.0.0.1:1?tls=false"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := openEventStore(ctx, c, slog.New(slog.NewTextHandler(&buf, nil)))
	if err == nil {
		s.Close()
		t.Fatal("opened an EventStoreDB store on port 1")
	}
	if !unavailable(err) {
		t.Errorf("%v: not taken as a dependency to wait for", err)
	}
	if !strings.Contains(buf.String(), "inline read models and direct publishing are off") {
		t.Errorf("syncd did not say how it runs on EventStoreDB; log:\n%s", buf.String())
	}
}
