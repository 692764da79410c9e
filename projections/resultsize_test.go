package projections

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

func TestTooLargeIsResultTooLarge(t *testing.T) {
	err := tooLarge(fmt.Errorf("changes of w: %w", errTooLarge))
	if !errors.Is(err, protocol.ErrResultTooLarge) || !errors.Is(err, errTooLarge) {
		t.Fatalf("tooLarge = %v: not ErrResultTooLarge", err)
	}
	other := errors.New("conn reset")
	if got := tooLarge(other); got != other {
		t.Fatalf("tooLarge changed another error: %v", got)
	}
	if tooLarge(nil) != nil {
		t.Fatal("tooLarge(nil) != nil")
	}
}
