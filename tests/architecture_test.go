package tests

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/stacksync-es/syncservice"

// deps lists the packages pkg imports, directly or not (tests excluded).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

func isStd(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }

// STYLE.md: the domain is pure (standard library and google/uuid only), and the event
// store knows nothing of the project; the dependency direction stays checkable.
func TestDependencyDirection(t *testing.T) {
	for _, p := range deps(t, module+"/domain") {
		if p == module+"/domain" || isStd(p) || p == "github.com/google/uuid" {
			continue
		}
		t.Errorf("domain depends on %s", p)
	}
	for _, pkg := range []string{"/eventstore", "/eventstore/postgres", "/eventstore/memstore", "/eventstore/esdb", "/eventstore/storetest"} {
		for _, p := range deps(t, module+pkg) {
			if strings.HasPrefix(p, module+"/") && !strings.HasPrefix(p, module+"/eventstore") {
				t.Errorf("%s depends on %s", pkg, p)
			}
		}
	}
	for _, p := range deps(t, module+"/service") {
		if strings.HasPrefix(p, module+"/transport") {
			t.Errorf("service depends on the transport: %s", p)
		}
	}
}
