package postgres_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a subscription or a
// pool that outlived its Close).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
