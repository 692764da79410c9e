package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/rabbitadmin"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/client"
)

// benchFlags configure `syncctl bench`.
var benchFlags benchConfig

func benchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load a running syncd end to end through RabbitMQ: commits/s and commit-to-notification latency, getChanges latency",
		Long: `bench creates --users users (with broker accounts unless --trust), connects one device per
user with the Go client library, and runs --concurrency workers that each commit new files
into their user's personal workspace and wait for the commit's own notifyCommit, until
--commits commits are done. It reports throughput and latency percentiles, then times
--reads getChanges calls. Run it against a scratch database: the users stay.`,
		Args: cobra.NoArgs,
		RunE: runBench,
	}
	amqpDefault := os.Getenv("SYNCD_AMQP_URL")
	if amqpDefault == "" {
		amqpDefault = "amqp://guest:guest@127.0.0.1:5672/"
	}
	api := os.Getenv("SYNC_RABBITMQ_API")
	if api == "" {
		api = "http://guest:guest@127.0.0.1:15672"
	}
	f := c.Flags()
	f.StringVar(&benchFlags.amqpURL, "amqp", amqpDefault, "broker URL (its host and vhost are used; with --trust also its login)")
	f.StringVar(&benchFlags.rabbitAPI, "rabbitmq-api", api, "management API with administrator credentials, to create the users' broker accounts")
	f.StringVar(&benchFlags.vhost, "vhost", "/", "the vhost syncd serves")
	f.BoolVar(&benchFlags.trust, "trust", false, "the server runs with -auth trust: connect with --amqp's login, no user_id")
	f.IntVar(&benchFlags.users, "users", 4, "users (one device each)")
	f.IntVar(&benchFlags.concurrency, "concurrency", 16, "workers committing at once")
	f.IntVar(&benchFlags.commits, "commits", 2000, "commits in all")
	f.IntVar(&benchFlags.items, "items", 1, "new files per commit")
	f.IntVar(&benchFlags.reads, "reads", 200, "getChanges calls timed after the commits")
	return c
}

type benchUser struct {
	id        uuid.UUID
	workspace uuid.UUID
	cl        *client.Client
}

func runBench(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	bf := benchFlags
	if bf.users < 1 || bf.concurrency < 1 || bf.commits < 1 || bf.items < 1 || bf.items > 10000 {
		return errors.New("--users, --concurrency, --commits must be >= 1 and --items 1..10000")
	}
	users, err := benchSetup(ctx, bf)
	if err != nil {
		return err
	}
	defer func() {
		for _, u := range users {
			u.cl.Close()
		}
	}()

	fmt.Printf("committing: %d commits of %d item(s), %d workers, %d users\n", bf.commits, bf.items, bf.concurrency, bf.users)
	var next atomic.Int64
	latencies := make([]time.Duration, bf.commits)
	var failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for w := range bf.concurrency {
		u := users[w%len(users)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(bf.commits) || ctx.Err() != nil {
					return
				}
				items := make([]domain.ItemMetadata, bf.items)
				for k := range items {
					temp := -(i*int64(bf.items) + int64(k) + 1)
					items[k] = domain.ItemMetadata{TempID: &temp, Version: 1, Status: domain.StatusNew,
						ModifiedAt: time.Now().UTC(), Filename: fmt.Sprintf("bench-%d-%d.bin", i, k), Mimetype: "application/octet-stream",
						Size: 1024, Checksum: i, Chunks: []string{fmt.Sprintf("chk-%d-%d", i, k)}}
				}
				t0 := time.Now()
				n, err := u.cl.CommitAndWait(ctx, &client.CommitRequest{WorkspaceID: u.workspace, Items: items})
				latencies[i] = time.Since(t0)
				if err == nil && !n.Items[0].CommitSucceed {
					err = fmt.Errorf("item refused: %s", n.Items[0].Reason)
				}
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := min(next.Load(), int64(bf.commits))
	fmt.Printf("  %d commits in %v: %.0f commits/s, %.0f items/s; failed %d\n", done, elapsed.Round(time.Millisecond),
		float64(done)/elapsed.Seconds(), float64(done*int64(bf.items))/elapsed.Seconds(), failed.Load())
	printLatencies("  commit → own notifyCommit", latencies[:done])
	if firstErr != nil {
		fmt.Printf("  first error: %v\n", firstErr)
	}

	if bf.reads > 0 {
		u := users[0]
		lat := make([]time.Duration, bf.reads)
		var n int
		for i := range bf.reads {
			t0 := time.Now()
			items, err := u.cl.GetChanges(ctx, u.workspace)
			lat[i] = time.Since(t0)
			if err != nil {
				return fmt.Errorf("getChanges: %w", err)
			}
			n = len(items)
		}
		printLatencies(fmt.Sprintf("  getChanges (%d items)", n), lat)
	}
	if failed.Load() > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("bench: %d commits failed", failed.Load())}
	}
	return ctx.Err()
}

type benchConfig = struct {
	amqpURL     string
	rabbitAPI   string
	vhost       string
	trust       bool
	users       int
	concurrency int
	commits     int
	items       int
	reads       int
}

// benchSetup creates the users and connects their devices.
func benchSetup(ctx context.Context, bf benchConfig) ([]benchUser, error) {
	a, err := openAdmin(ctx)
	if err != nil {
		return nil, err
	}
	defer a.close()
	var admin *rabbitadmin.Client
	if !bf.trust {
		if admin, err = rabbitadmin.New(bf.rabbitAPI, bf.vhost); err != nil {
			return nil, err
		}
	}
	base, err := url.Parse(bf.amqpURL)
	if err != nil {
		return nil, fmt.Errorf("--amqp: %w", err)
	}
	run := uuid.NewString()[:8]
	var users []benchUser
	for i := range bf.users {
		id, ws, err := a.svc.CreateUser(ctx, service.NewUser{Name: fmt.Sprintf("bench-%s-%d", run, i),
			Email: fmt.Sprintf("bench-%s-%d@example.invalid", run, i)})
		if err != nil {
			return nil, err
		}
		u := *base
		cfg := client.Config{UserID: id, DeviceName: fmt.Sprintf("bench-%d", i), Timeout: 30 * time.Second, Logger: logger()}
		if admin != nil {
			pw, err := rabbitadmin.NewPassword()
			if err != nil {
				return nil, err
			}
			if err := admin.PutUser(ctx, id, pw); err != nil {
				return nil, err
			}
			u.User = url.UserPassword(id.String(), pw)
		} else {
			cfg.SharedLogin = true
		}
		cfg.URL = u.String()
		cl, err := client.Dial(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("connect user %s: %w", id, err)
		}
		users = append(users, benchUser{id: id, workspace: ws, cl: cl})
	}
	// Accounts reach the read models asynchronously: wait until each user sees a workspace.
	for _, u := range users {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := u.cl.GetWorkspaces(ctx)
			if err == nil {
				break
			}
			if !errors.Is(err, protocol.ErrNoWorkspaces) || time.Now().After(deadline) {
				return nil, fmt.Errorf("user %s: getWorkspaces: %w", u.id, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := u.cl.UpdateDevice(ctx, nil); err != nil {
			return nil, fmt.Errorf("user %s: register: %w", u.id, err)
		}
		if err := u.cl.Subscribe(client.SubscribeOptions{Handler: func(client.Update) {}}); err != nil {
			return nil, fmt.Errorf("user %s: subscribe: %w", u.id, err)
		}
	}
	return users, nil
}

func printLatencies(what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration {
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
	}
	fmt.Printf("%s: p50 %v  p95 %v  p99 %v  max %v\n", what, q(0.50), q(0.95), q(0.99), s[len(s)-1].Round(10*time.Microsecond))
}

func init() { rootCmd.AddCommand(benchCmd()) }
