package wire

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

// TestErrorCodesAppendOnly pins the code table: released codes keep their place and
// spelling; new ones go at the end.
func TestErrorCodesAppendOnly(t *testing.T) {
	released := []string{"InvalidRequest", "Unauthorized", "UserNotFoundException", "NoWorkspacesFoundException",
		"WorkspaceNotFound", "DeviceNotValidException", "Busy", "ResultTooLarge"}
	if len(codes) < len(released) {
		t.Fatalf("the table has %d codes, %d were released", len(codes), len(released))
	}
	for i, c := range released {
		if codes[i].code != c {
			t.Errorf("code %d is %q, released as %q", i, codes[i].code, c)
		}
	}
}

func TestResultTooLargeCode(t *testing.T) {
	err := fmt.Errorf("changes of w: %w", fmt.Errorf("%w: over 64 MiB", protocol.ErrResultTooLarge))
	e := ErrorOf(err)
	if e.Type != CodeResultTooLarge || e.Message != err.Error() || e.RetryAfterMs != nil {
		t.Fatalf("ErrorOf = %+v", e)
	}
	if !errors.Is(ErrOf(CodeResultTooLarge), protocol.ErrResultTooLarge) {
		t.Fatal("ResultTooLarge does not map back to protocol.ErrResultTooLarge")
	}
}

func TestCheckBodySize(t *testing.T) {
	if err := CheckBodySize(MaxBodySize); err != nil {
		t.Fatalf("a body of exactly the limit: %v", err)
	}
	if err := CheckBodySize(MaxBodySize + 1); CodeOf(err) != CodeInvalidRequest {
		t.Fatalf("a body over the limit: %v, want InvalidRequest", err)
	}
}
