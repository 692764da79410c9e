//go:build auditfill

package audit

import (
	"os"
	"testing"

	"github.com/stacksync-es/syncservice/eventstore/postgres"
)

// TestFillForCLI writes the scripted history into the database named by
// SYNC_AUDIT_FILL_DSN and keeps it, to try `syncctl audit` by hand:
//
//	createdb -h 127.0.0.1 -U postgres audit_demo
//	SYNC_AUDIT_FILL_DSN=postgres://postgres@127.0.0.1:5432/audit_demo go test -tags auditfill ./audit -run TestFillForCLI -v
//	syncctl --pg postgres://postgres@127.0.0.1:5432/audit_demo audit log --workspace 67554cd7-a880-55ce-b099-bced30e5880c
//
// It is a tool, not a test: the build tag keeps it out of the suite.
func TestFillForCLI(t *testing.T) {
	dsn := os.Getenv("SYNC_AUDIT_FILL_DSN")
	if dsn == "" {
		t.Fatal("set SYNC_AUDIT_FILL_DSN to the database to fill with the scripted history")
	}
	s, err := postgres.Open(ctxT(t), postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeScript(t, s)
	t.Logf("workspace %s: owner %s (device %s), member %s (device %s)", scriptWS, ownerID, ownerDevice, memberID, memberDevice)
}
