package service

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stacksync-es/syncservice/projections"
)

func TestTooLargeIsResultTooLarge(t *testing.T) {
	err := tooLarge(fmt.Errorf("changes of w: %w", projections.ErrResultTooLarge))
	if !errors.Is(err, ErrResultTooLarge) || !errors.Is(err, projections.ErrResultTooLarge) {
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
