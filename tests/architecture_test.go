package tests

import (
	"os/exec"
	"slices"
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

// modulePackages maps every package of the module, as `go list` finds it on disk, to
// the packages it imports, directly or not (tests excluded).
func modulePackages(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", module, err, out)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkgs[f[0]] = f[1:]
	}
	return pkgs
}

// isPgx reports whether p is part of the PostgreSQL driver (pgx, pgconn, pgxpool and
// the jackc packages they pull in).
func isPgx(p string) bool { return strings.HasPrefix(p, "github.com/jackc/") }

func isStd(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }

// within reports whether p is the module's package dir or one below it.
func within(p, dir string) bool {
	return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/")
}

// STYLE.md: the domain is pure (standard library and google/uuid only), and the event
// store knows nothing of the project; the dependency direction stays checkable. The
// protocol's vocabulary (domain/protocol) is part of the domain, so it is pure too; the
// device library and the wire use it instead of the service. Each
// rule holds for every package in its directory, including packages added later.
func TestDependencyDirection(t *testing.T) {
	rules := []struct {
		dir     string
		bad     func(dep string) bool
		reason  string
		atLeast int // packages the rule must find, so that it cannot pass vacuously
	}{
		{"domain", func(p string) bool { return !isStd(p) && p != "github.com/google/uuid" && !within(p, "domain") },
			"the domain imports only the standard library and google/uuid", 1},
		{"eventstore", func(p string) bool { return strings.HasPrefix(p, module+"/") && !within(p, "eventstore") },
			"the event store knows nothing of the project", 5},
		{"service", func(p string) bool { return within(p, "transport") },
			"the service does not depend on the transport", 1},
		// The service depends on small interfaces (store, read model, id allocator); cmd
		// wires the PostgreSQL implementations.
		{"service", func(p string) bool { return isPgx(p) || within(p, "projections") },
			"the service depends on neither pgx nor the projections", 1},
		// A device program links the client: it must not carry the server's database
		// stack, nor the service and its read models.
		{"transport/client", func(p string) bool { return isPgx(p) || within(p, "service") || within(p, "projections") },
			"the device library depends on no pgx package, not on the service, not on the projections", 1},
		// The wire converts between JSON and the protocol's vocabulary (domain/protocol).
		{"transport/wire", func(p string) bool { return within(p, "service") },
			"the wire does not depend on the service", 1},
		// The Java codec of legacy clients reads hostile bytes: it stands alone, so that
		// nothing it decodes can reach further than its own closed class table.
		{"transport/legacy/javaser", func(p string) bool {
			return !isStd(p) && p != "github.com/google/uuid" && !within(p, "transport/legacy/javaser")
		}, "the Java codec imports only the standard library and google/uuid", 1},
	}
	pkgs := modulePackages(t)
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, r := range rules {
		checked := 0
		for _, p := range names {
			if !within(p, r.dir) {
				continue
			}
			checked++
			for _, d := range pkgs[p] {
				if r.bad(d) {
					t.Errorf("%s depends on %s (%s)", strings.TrimPrefix(p, module+"/"), d, r.reason)
				}
			}
		}
		if checked < r.atLeast {
			t.Errorf("go list found %d packages under %s/, want at least %d: %v", checked, r.dir, r.atLeast, names)
		}
	}
}
