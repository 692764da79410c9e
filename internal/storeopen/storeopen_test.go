package storeopen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/eventstore"
)

// -store takes postgres (or nothing) and EventStoreDB URLs only; a password never shows
// in the error.
func TestValidate(t *testing.T) {
	for _, ok := range []string{"", Postgres, "esdb://127.0.0.1:2113?tls=false", "esdb+discover://a:2113,b:2113?tls=false"} {
		if err := Validate(ok, ""); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []struct{ store, prefix string }{
		{"mysql://u:secret@h/db", ""},
		{"esdb://127.0.0.1:2113?tls=false", "$all"},
		{"esdb://127.0.0.1:2113?tls=sometimes", ""},
	} {
		err := Validate(bad.store, bad.prefix)
		if err == nil {
			t.Errorf("%+v accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%+v: the error shows the password: %v", bad, err)
		}
	}
	if got := Redact("esdb://admin:changeit@127.0.0.1:2113?tls=false"); strings.Contains(got, "changeit") || !strings.Contains(got, "admin") {
		t.Errorf("Redact: %s", got)
	}
}

// Inline read models need the PostgreSQL store: asking for them on EventStoreDB is an
// error before any connection is tried.
func TestOpenRefusesInlineOnESDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	inline := func([]eventstore.RecordedEvent, *pgx.Batch) error { return nil }
	_, err := Open(ctx, Options{Store: "esdb://127.0.0.1:1?tls=false", Inline: inline})
	if err == nil || !strings.Contains(err.Error(), "inline read models need the PostgreSQL store") {
		t.Fatalf("Open: %v", err)
	}
}
