package projections

import (
	"testing"

	"go.uber.org/goleak"
)

// Every projector, subscription and pool a test starts must be stopped by its end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
