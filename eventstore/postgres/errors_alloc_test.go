package postgres

import "testing"

// The append path asks both questions of every statement's error, nearly always nil:
// that must not allocate (an escaping *pgconn.PgError target did, four times per append).
func TestErrorChecksOfNilAllocateNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		if isEventIDConflict(nil) || isUnexpectedVersion(nil) {
			t.Fatal("nil reported as a conflict")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per nil check, want 0", n)
	}
}
