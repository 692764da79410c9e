package legacy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

// FuzzDecodeCall feeds arbitrary bodies to what the legacy server does with a
// delivery before it calls the service: decode the envelope and parse the request of
// its method. Seeded with the golden requests. It never panics, and every refusal is
// InvalidRequest (so the desktop gets an exception, and nothing reaches the service).
func FuzzDecodeCall(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("javaser", "testdata", "golden", "*-req-*.bin"))
	if err != nil || len(names) == 0 {
		f.Fatalf("golden requests: %v", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	parsers := map[string]func(Call) error{
		MethodGetAccountInfo:      func(c Call) error { _, err := ParseGetAccount(c); return err },
		MethodUpdateDevice:        func(c Call) error { _, err := ParseUpdateDevice(c); return err },
		MethodGetWorkspaces:       func(c Call) error { _, err := ParseGetWorkspaces(c); return err },
		MethodGetChanges:          func(c Call) error { _, err := ParseGetChanges(c); return err },
		MethodCommit:              func(c Call) error { _, err := ParseCommit(c); return err },
		MethodUpdateWorkspace:     func(c Call) error { _, err := ParseUpdateWorkspace(c); return err },
		MethodCreateShareProposal: func(c Call) error { _, err := ParseShareProposal(c); return err },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeCall(body)
		if err == nil {
			p, ok := parsers[c.Method]
			if !ok {
				return
			}
			err = p(c)
			if err == nil {
				return
			}
		}
		if !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), "invalid request") {
			t.Fatalf("refusal is not InvalidRequest: %v", err)
		}
	})
}
