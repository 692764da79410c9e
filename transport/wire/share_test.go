package wire_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// createShareProposal's request object is refused with InvalidRequest when a required
// field is missing or wrongly typed, or a value is out of PROTOCOL.md §3's bounds.
func TestParseCreateShareProposalRefuses(t *testing.T) {
	const user = `"userId": "1d3e5f70-8192-4a3b-8c5d-6e7f8091a2b3"`
	many := strings.Repeat(`"a@b.c",`, wire.MaxShareEmails) + `"a@b.c"`
	cases := map[string]string{
		"no requestId":         `{` + user + `, "itemId": 1, "emails": ["a@b.c"]}`,
		"no userId":            `{"requestId": "r", "itemId": 1, "emails": ["a@b.c"]}`,
		"userId not a uuid":    `{"requestId": "r", "userId": "bob", "itemId": 1, "emails": ["a@b.c"]}`,
		"no itemId":            `{"requestId": "r", ` + user + `, "emails": ["a@b.c"]}`,
		"itemId 0":             `{"requestId": "r", ` + user + `, "itemId": 0, "emails": ["a@b.c"]}`,
		"itemId 2^53":          `{"requestId": "r", ` + user + `, "itemId": 9007199254740992, "emails": ["a@b.c"]}`,
		"itemId a string":      `{"requestId": "r", ` + user + `, "itemId": "1", "emails": ["a@b.c"]}`,
		"no emails":            `{"requestId": "r", ` + user + `, "itemId": 1}`,
		"emails null":          `{"requestId": "r", ` + user + `, "itemId": 1, "emails": null}`,
		"emails a string":      `{"requestId": "r", ` + user + `, "itemId": 1, "emails": "a@b.c"}`,
		"an e-mail too long":   `{"requestId": "r", ` + user + `, "itemId": 1, "emails": ["` + strings.Repeat("a", 250) + `@b.cd"]}`,
		"an e-mail with NUL":   `{"requestId": "r", ` + user + `, "itemId": 1, "emails": ["a\u0000@b.c"]}`,
		"too many e-mails":     `{"requestId": "r", ` + user + `, "itemId": 1, "emails": [` + many + `]}`,
		"isEncrypted a string": `{"requestId": "r", ` + user + `, "itemId": 1, "emails": ["a@b.c"], "isEncrypted": "yes"}`,
		"not an object":        `["r"]`,
	}
	for name, params := range cases {
		_, err := wire.ParseCreateShareProposal([]byte(params))
		if !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("%s: %v, want InvalidRequest", name, err)
		}
	}
	// At the bounds: an e-mail of 254 bytes and MaxShareEmails e-mails are accepted.
	ok := fmt.Sprintf(`{"requestId": "r", %s, "itemId": 1, "emails": ["%s@b.cd", %s]}`, user, strings.Repeat("a", 249),
		strings.TrimSuffix(strings.Repeat(`"a@b.c",`, wire.MaxShareEmails-1), ","))
	if r, err := wire.ParseCreateShareProposal([]byte(ok)); err != nil || len(r.Emails) != wire.MaxShareEmails {
		t.Errorf("at the bounds: %d e-mails, %v", len(r.Emails), err)
	}
}

// A page's movedOut survives the wire: rendered, encoded, decoded and converted back.
func TestMovedOutRoundTrip(t *testing.T) {
	want := []protocol.MovedOutItem{{ID: 4002, WorkspaceID: gShared}, {ID: 1<<53 - 1, WorkspaceID: gSecret}}
	b, err := json.Marshal(wire.FromChangesPage(protocol.ChangesPage{MovedOut: want}))
	if err != nil {
		t.Fatal(err)
	}
	var p wire.ChangesPage
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	got, err := wire.ToMovedOut(p.MovedOut)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("movedOut %+v %v, want %+v", got, err, want)
	}
	if _, err := wire.ToMovedOut([]wire.MovedOutItem{{ID: 1, WorkspaceID: "S"}}); err == nil {
		t.Fatal("a movedOut workspaceId that is not a UUID converts")
	}
}
