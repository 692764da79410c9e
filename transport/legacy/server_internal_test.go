package legacy

import (
	"testing"

	"github.com/google/uuid"

	js "github.com/stacksync-es/syncservice/transport/legacy/javaser"
)

// One user's requests in flight are bounded by PerUserInFlight; other users keep
// their own share, and a place is given back when a request leaves.
func TestPerUserInFlight(t *testing.T) {
	cfg := DefaultServerConfig()
	cfg.URL, cfg.PerUserInFlight = "amqp://x", 2
	s, err := NewServer(cfg, nopService{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.enter("a") || !s.enter("a") {
		t.Fatal("the first two requests of a refused")
	}
	if s.enter("a") {
		t.Fatal("a third request of a admitted")
	}
	if !s.enter("b") {
		t.Fatal("b refused while a is at its bound")
	}
	s.leave("a")
	if !s.enter("a") {
		t.Fatal("a refused after one of its requests left")
	}
}

// A request counts against its body's userId, else the e-mail it asks about.
func TestUserKey(t *testing.T) {
	u := uuid.New()
	withUser := Call{Method: MethodGetChanges, Param: js.New(js.ClassGetChangesRequest, map[string]js.Value{"userId": js.NewUUID(u)})}
	byEmail := Call{Method: MethodGetAccountInfo, Param: js.New(js.ClassGetAccountRequest, map[string]js.Value{"email": js.Str("a@b")})}
	none := Call{Method: MethodGetWorkspaces, Param: js.New(js.ClassGetWorkspacesRequest, nil)}
	for c, want := range map[*Call]string{&withUser: u.String(), &byEmail: "email:a@b", &none: "anonymous"} {
		if got := userKey(*c); got != want {
			t.Errorf("%s: key %q, want %q", c.Method, got, want)
		}
	}
}

// nopService is never called: the tests here stop before the service.
type nopService struct{ Service }
