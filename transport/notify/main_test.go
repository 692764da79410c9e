package notify

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of a Notifier or Binder ends when its Run returns. (Idle keep-alive
// connections of the management API's HTTP client are not ours.)
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
}
