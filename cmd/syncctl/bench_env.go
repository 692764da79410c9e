package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/rabbitadmin"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/client"
)

// benchEnv is what a bench run holds open: the service on the --pg database (to create
// users), the management API, and the floor's responder once a scenario needs it.
type benchEnv struct {
	cfg   benchConfig
	admin *adminEnv
	api   *rabbitadmin.Client // nil with --trust
	base  *url.URL            // --amqp
	run   string              // a short id naming this run's users, files and scratch objects

	accounts []uuid.UUID // broker accounts created, deleted at the end
	floor    *floorEnv   // started by the first scenario with baselines
	// guaranteedFloor is the floor with the broker work of the server's guarantees,
	// started by the first commit scenario with baselines.
	guaranteedFloor *floorEnv
	// spreadPeak is the spread scenario's throughput in this run: notify's default pace.
	spreadPeak float64
}

// benchDevice is one connected, subscribed device and the workspace it commits to.
type benchDevice struct {
	cl        *client.Client
	workspace uuid.UUID
	tap       *tap // its event handler, for scenarios that listen
}

func openBenchEnv(ctx context.Context, cfg benchConfig) (*benchEnv, error) {
	base, err := url.Parse(cfg.amqpURL)
	if err != nil {
		return nil, fmt.Errorf("--amqp: %w", err)
	}
	e := &benchEnv{cfg: cfg, base: base, run: uuid.NewString()[:8]}
	if !cfg.trust {
		if e.api, err = rabbitadmin.New(cfg.rabbitAPI, cfg.vhost); err != nil {
			return nil, err
		}
	}
	if e.admin, err = openAdmin(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// close stops the floor and deletes the broker accounts this run created.
func (e *benchEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range []*floorEnv{e.floor, e.guaranteedFloor} {
		if f != nil {
			f.close(ctx)
		}
	}
	for _, id := range e.accounts {
		if err := e.api.DeleteUser(ctx, id); err != nil {
			logger().Warn("bench: delete broker account", "user", id, "err", err)
		}
	}
	e.admin.close()
}

// serverDevices creates users, each with devicesPerUser connected devices on their
// personal workspace, registered and subscribed.
func (e *benchEnv) serverDevices(ctx context.Context, scenario string, users, devicesPerUser int) ([]benchDevice, error) {
	var devs []benchDevice
	for i := range users {
		id, ws, err := e.admin.svc.CreateUser(ctx, service.NewUser{Name: fmt.Sprintf("bench-%s-%s-%d", e.run, scenario, i),
			Email: fmt.Sprintf("bench-%s-%s-%d@example.invalid", e.run, scenario, i)})
		if err != nil {
			return devs, fmt.Errorf("create user: %w", err)
		}
		u := *e.base
		shared := true
		if e.api != nil {
			pw, err := rabbitadmin.NewPassword()
			if err != nil {
				return devs, err
			}
			if err := e.api.PutUser(ctx, id, pw); err != nil {
				return devs, err
			}
			e.accounts = append(e.accounts, id)
			u.User, shared = url.UserPassword(id.String(), pw), false
		}
		for d := range devicesPerUser {
			cl, err := client.Dial(ctx, client.Config{URL: u.String(), UserID: id, SharedLogin: shared,
				DeviceName: fmt.Sprintf("bench-%d-%d", i, d), Timeout: 30 * time.Second, Logger: logger()})
			if err != nil {
				return devs, fmt.Errorf("connect user %s: %w", id, err)
			}
			d := benchDevice{cl: cl, workspace: ws, tap: &tap{}}
			devs = append(devs, d)
			if err := registerWhenProjected(ctx, cl, d.tap.handle); err != nil {
				return devs, err
			}
		}
	}
	return devs, nil
}

// registerWhenProjected waits until the new user's account reached the read models (it
// does asynchronously), then registers the device and subscribes to its event queue
// with handler.
func registerWhenProjected(ctx context.Context, cl *client.Client, handler func(client.Update)) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cl.GetWorkspaces(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, protocol.ErrNoWorkspaces) || time.Now().After(deadline) {
			return fmt.Errorf("user %s: getWorkspaces: %w", cl.UserID(), err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := cl.UpdateDevice(ctx, nil); err != nil {
		return fmt.Errorf("user %s: register: %w", cl.UserID(), err)
	}
	if err := cl.Subscribe(client.SubscribeOptions{Handler: handler}); err != nil {
		return fmt.Errorf("user %s: subscribe: %w", cl.UserID(), err)
	}
	return nil
}

func closeDevices(devs []benchDevice) {
	for _, d := range devs {
		_ = d.cl.Close()
	}
}
