package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// -pprof mounts the profiles on the HTTP listener; without it /debug/pprof/ is not there.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	get := func(h http.Handler, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	on := httpHandler(prometheus.NewRegistry(), nil, true)
	if rec := get(on, "/debug/pprof/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("pprof on: /debug/pprof/ answered %d %.200q, want 200 listing the profiles", rec.Code, rec.Body.String())
	}
	if rec := get(on, "/debug/pprof/heap?debug=1"); rec.Code != http.StatusOK {
		t.Fatalf("pprof on: /debug/pprof/heap answered %d", rec.Code)
	}
	if rec := get(on, "/debug/pprof/cmdline"); rec.Code != http.StatusOK {
		t.Fatalf("pprof on: /debug/pprof/cmdline answered %d", rec.Code)
	}
	off := httpHandler(prometheus.NewRegistry(), nil, false)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile"} {
		if rec := get(off, path); rec.Code != http.StatusNotFound {
			t.Errorf("pprof off: %s answered %d, want 404", path, rec.Code)
		}
	}
	// The other endpoints are there either way.
	for _, h := range []http.Handler{on, off} {
		if rec := get(h, "/healthz"); rec.Code != http.StatusOK {
			t.Errorf("/healthz answered %d", rec.Code)
		}
	}
}

// -pprof is off by default, SYNCD_PPROF turns it on (the flag wins), a value that is no
// boolean is an error, and it needs the HTTP listener.
func TestPprofConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		args []string
		env  map[string]string
		want bool
		ok   bool
	}{
		{nil, nil, false, true},
		{[]string{"-pprof"}, nil, true, true},
		{nil, map[string]string{"SYNCD_PPROF": "true"}, true, true},
		{[]string{"-pprof=false"}, map[string]string{"SYNCD_PPROF": "true"}, false, true},
		{nil, map[string]string{"SYNCD_PPROF": "on"}, false, false},
		{[]string{"-pprof", "-http", ""}, nil, false, false},
	} {
		cfg, err := parseConfig(c.args, env(c.env), io.Discard)
		if (err == nil) != c.ok || (c.ok && cfg.pprof != c.want) {
			t.Errorf("args %v env %v: pprof %v, err %v; want %v, ok %v", c.args, c.env, cfg.pprof, err, c.want, c.ok)
		}
	}
}
