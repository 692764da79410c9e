// Package rpctest holds what the transport's tests share: Service, the real service
// (package service) on memstore with an in-memory read model and id allocator, wrapped
// with a call hook and a call record; and helpers that start a real rpc.Server on a
// test's own RabbitMQ vhost. It holds no rules of its own: every request is decided by
// the service and the domain. It must never be used by a server process.
package rpctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/topology"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// TestLogger routes logs to t.Log.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// StartServer runs an rpc.Server with cfg (URL required) and svc until the test ends,
// and fails the test if Run ends with an error other than after Close.
func StartServer(t testing.TB, cfg rpc.Config, svc rpc.Service) *rpc.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = TestLogger(t)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	srv, err := rpc.NewServer(cfg, svc)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	})
	queue := cfg.RequestQueue
	if queue == "" {
		queue = topology.RequestQueue
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := consumers(cfg.URL, queue)
		if err == nil && n > 0 {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not consuming %s after 10s: %d consumers, %v", queue, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumers returns the number of consumers of queue q.
func consumers(amqpURL, q string) (int, error) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return st.Consumers, nil
}

// Mgmt calls the RabbitMQ management API at base (with credentials in the URL).
func Mgmt(base, method, path, body string) ([]byte, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parse management URL: %w", err)
	}
	req, err := http.NewRequest(method, strings.TrimRight(u.String(), "/")+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
		req.URL.User = nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, nil
}

// BrokerUser creates a broker account named by user's id on vhost of amqpURL, with the
// permissions of PROTOCOL.md §6, deleted when the test ends; it returns the AMQP URL
// that logs in as that user.
func BrokerUser(t testing.TB, mgmtURL, amqpURL string, user uuid.UUID) string {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatalf("parse %s: %v", amqpURL, err)
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	name := user.String()
	password := uuid.NewString()
	if _, err := Mgmt(mgmtURL, http.MethodPut, "/api/users/"+name, fmt.Sprintf(`{"password":%q,"tags":""}`, password)); err != nil {
		t.Fatalf("create broker user %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := Mgmt(mgmtURL, http.MethodDelete, "/api/users/"+name, ""); err != nil {
			t.Logf("delete broker user %s: %v", name, err)
		}
	})
	q := strings.ReplaceAll(name, "-", `\\-`)
	perm := fmt.Sprintf(`{"configure":"^reply\\.%[1]s\\..*","write":"^(rpc_global_exchange|reply\\.%[1]s\\..*)$","read":"^(reply|events)\\.%[1]s\\..*"}`, q)
	if _, err := Mgmt(mgmtURL, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+name, perm); err != nil {
		t.Fatalf("grant broker user %s: %v", name, err)
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

// CloseConnections force-closes every broker connection whose client-provided name
// starts with prefix on vhost of amqpURL, through the management API, and returns how
// many it closed.
func CloseConnections(mgmtURL, amqpURL, prefix string) (int, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return 0, err
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	b, err := Mgmt(mgmtURL, http.MethodGet, "/api/vhosts/"+url.PathEscape(vhost)+"/connections", "")
	if err != nil {
		return 0, err
	}
	names, err := connectionNames(b, prefix)
	if err != nil {
		return 0, err
	}
	closed := 0
	for _, n := range names {
		if _, err := Mgmt(mgmtURL, http.MethodDelete, "/api/connections/"+url.PathEscape(n), ""); err != nil {
			if strings.Contains(err.Error(), "404") {
				continue // already gone; the listing lags behind the broker
			}
			return closed, err
		}
		closed++
	}
	return closed, nil
}

// PublishNotification publishes a recorded commit's notifyCommit to its workspace's
// exchange, as the notifier does.
func PublishNotification(ctx context.Context, amqpURL string, res service.CommitResult) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ws := res.Event.WorkspaceID
	if err := topology.DeclareEventExchange(ch, ws); err != nil {
		return err
	}
	body, err := wire.EncodeNotifyCommit(res.EventID.String(), res.Event)
	if err != nil {
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topology.EventExchange(ws), "", false, false, amqp.Publishing{
		ContentType: "application/json", Type: "gson", AppId: ws.String(), CorrelationId: uuid.NewString(),
		DeliveryMode: amqp.Persistent, Body: body})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("nacked")
	}
	return nil
}

func connectionNames(listing []byte, prefix string) ([]string, error) {
	var conns []struct {
		Name  string `json:"name"`
		Props struct {
			ConnectionName string `json:"connection_name"`
		} `json:"client_properties"`
	}
	if err := json.Unmarshal(listing, &conns); err != nil {
		return nil, fmt.Errorf("decode connection list: %w", err)
	}
	var out []string
	for _, c := range conns {
		if strings.HasPrefix(c.Props.ConnectionName, prefix) {
			out = append(out, c.Name)
		}
	}
	return out, nil
}
