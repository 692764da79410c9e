package main

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// `syncctl user add --vhost V` prints a device URL that names V, escaped so that a
// broker URL parser finds V again.
func TestDeviceURLNamesTheVhost(t *testing.T) {
	user := uuid.MustParse("6f1c1f4e-7a52-4c1e-9c55-0d1f4b6a2b10")
	for _, tc := range []struct{ vhost, want string }{
		{"/", "amqp://" + user.String() + ":<password>@<broker>:5672/%2F"},
		{"sync", "amqp://" + user.String() + ":<password>@<broker>:5672/sync"},
		{"team/a b", "amqp://" + user.String() + ":<password>@<broker>:5672/team%2Fa%20b"},
	} {
		got := deviceURL(user, tc.vhost)
		if got != tc.want {
			t.Errorf("vhost %q: %s, want %s", tc.vhost, got, tc.want)
		}
		// The placeholders are not a parsable host and password; fill them in.
		real := strings.NewReplacer("<password>", "pw", "<broker>", "broker.example").Replace(got)
		uri, err := amqp.ParseURI(real)
		if err != nil {
			t.Fatalf("vhost %q: %s does not parse: %v", tc.vhost, real, err)
		}
		if uri.Vhost != tc.vhost || uri.Username != user.String() {
			t.Errorf("vhost %q: %s parses to vhost %q user %q", tc.vhost, real, uri.Vhost, uri.Username)
		}
	}
}
