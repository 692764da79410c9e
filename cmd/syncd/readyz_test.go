package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadyzNamesTheFailingCheck: /readyz fails with the check's error (a stuck
// projector names itself, its checkpoint and its last error) and passes when all pass.
func TestReadyzNamesTheFailingCheck(t *testing.T) {
	var stuck error = errors.New("projector workspaces stuck at checkpoint 5/7: no progress for 31s; last error: boom")
	h := httpHandler(prometheus.NewRegistry(), []func(context.Context) error{
		func(context.Context) error { return nil },
		func(context.Context) error { return stuck },
	}, false)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "projector workspaces stuck") {
		t.Fatalf("readyz: %d %q, want 503 naming the projector", rec.Code, rec.Body.String())
	}
	stuck = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("readyz: %d %q, want 200", rec.Code, rec.Body.String())
	}
}
