package memstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a subscription that
// outlived its Close or its context).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
