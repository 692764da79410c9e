// Package testenv gives tests their own real services: a fresh PostgreSQL database and a
// fresh RabbitMQ vhost per test, dropped when the test ends. When a service is missing
// the test skips, except under CI=true, where it fails: CI must never pass by skipping.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Defaults match the services of a development machine; override with the variables.
const (
	defaultAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" // TEST_PG_ADMIN_DSN
	defaultAMQPURL  = "amqp://guest:guest@127.0.0.1:5672/"                          // TEST_AMQP_URL
	defaultMgmtURL  = "http://guest:guest@127.0.0.1:15672"                          // TEST_RABBITMQ_API
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Missing reports an unavailable service: a failure under CI=true, a skip otherwise.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", what, err)
	}
	t.Skipf("%s unavailable (set CI=true to fail instead): %v", what, err)
}

// AdminDSN is the DSN of the maintenance database used to create test databases.
func AdminDSN() string { return env("TEST_PG_ADMIN_DSN", defaultAdminDSN) }

// PostgresDSN creates a fresh database for the test and returns its DSN. The database is
// dropped (connections terminated) when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		Missing(t, "PostgreSQL", err)
	}
	defer admin.Close(context.Background())
	name := "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminDSN())
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(AdminDSN())
	if err != nil {
		t.Fatalf("parse admin DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// AMQPURL returns the broker URL for the test's own fresh vhost, deleted when the test
// ends. The guest user gets full permissions on it.
func AMQPURL(t testing.TB) string {
	t.Helper()
	vhost := "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	if err := mgmt(http.MethodPut, "/api/vhosts/"+url.PathEscape(vhost), ""); err != nil {
		Missing(t, "RabbitMQ management API", err)
	}
	t.Cleanup(func() {
		if err := mgmt(http.MethodDelete, "/api/vhosts/"+url.PathEscape(vhost), ""); err != nil {
			t.Logf("delete vhost %s: %v", vhost, err)
		}
	})
	user := AMQPUser()
	perm := `{"configure":".*","write":".*","read":".*"}`
	if err := mgmt(http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user), perm); err != nil {
		t.Fatalf("grant %s on vhost %s: %v", user, vhost, err)
	}
	u, err := url.Parse(env("TEST_AMQP_URL", defaultAMQPURL))
	if err != nil {
		t.Fatalf("parse TEST_AMQP_URL: %v", err)
	}
	u.Path = "/" + vhost
	return u.String()
}

// AMQPUser is the user name in TEST_AMQP_URL.
func AMQPUser() string {
	u, err := url.Parse(env("TEST_AMQP_URL", defaultAMQPURL))
	if err != nil || u.User == nil {
		return "guest"
	}
	return u.User.Username()
}

// ManagementURL is the RabbitMQ management API base URL, with credentials.
func ManagementURL() string { return env("TEST_RABBITMQ_API", defaultMgmtURL) }

// Management calls the RabbitMQ management API (ManagementURL) with an optional JSON
// body and decodes a JSON answer into out when out is not nil.
func Management(method, path, body string, out any) error {
	base, err := url.Parse(ManagementURL())
	if err != nil {
		return fmt.Errorf("parse TEST_RABBITMQ_API: %w", err)
	}
	req, err := http.NewRequest(method, strings.TrimRight(base.String(), "/")+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if base.User != nil {
		pw, _ := base.User.Password()
		req.SetBasicAuth(base.User.Username(), pw)
		req.URL.User = nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, answer)
	}
	if out != nil {
		return json.Unmarshal(answer, out)
	}
	return nil
}

func mgmt(method, path, body string) error { return Management(method, path, body, nil) }

// Eventually polls f until it returns nil or timeout passes, then fails the test with
// f's last error. Use it instead of sleeping in async tests.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}
