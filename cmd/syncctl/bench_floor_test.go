package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/topology"
)

// The guaranteed floor does the broker work of the server's guarantees, the plain floor
// none of it: the guaranteed responder's request consumer needs acks under a prefetch
// window and its channel is in confirm mode, the plain one's neither. Through the
// guaranteed floor more commits than its prefetch window all get their notification
// (a floor that never acked would stall after floorPrefetch), and nothing stays unacked.
func TestGuaranteedFloorAcksConfirmedAnswers(t *testing.T) {
	base := mustParseURL(t, testenv.AMQPURL(t)) // a vhost of this test's, for the login
	cfg := benchConfig{rabbitAPI: testenv.ManagementURL(), commits: 3 * floorPrefetch}
	e := &benchEnv{cfg: cfg, base: base, run: "t" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10]}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, f := range []*floorEnv{e.floor, e.guaranteedFloor} {
			if f != nil {
				f.close(ctx)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := layout{users: 2, devicesPerUser: 1, workers: 2}
	for _, guaranteed := range []bool{false, true} {
		res, err := e.floorCommits(ctx, l, "floortest", guaranteed)
		if err != nil {
			t.Fatalf("guaranteed=%v: %v", guaranteed, err)
		}
		if res.Ops != cfg.commits || res.Failed != 0 {
			t.Fatalf("guaranteed=%v: %d commits done, %d failed (%s); want %d", guaranteed, res.Ops, res.Failed, res.FirstError, cfg.commits)
		}
	}
	for _, f := range []*floorEnv{e.floor, e.guaranteedFloor} {
		// The management API shows a channel's consumers and confirm mode from
		// statistics it collects every few seconds: poll until they are as they must be.
		testenv.Eventually(t, 30*time.Second, func() error {
			ackRequired, prefetch, confirm, err := floorConsumer(f.vhost)
			if err != nil {
				return err
			}
			if want := f.guaranteed; ackRequired != want || confirm != want || (prefetch == floorPrefetch) != want {
				return fmt.Errorf("floor guaranteed=%v: request consumer ack_required=%v prefetch=%d, channel confirm=%v", f.guaranteed, ackRequired, prefetch, confirm)
			}
			return nil
		})
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		var q struct {
			Unacked int `json:"messages_unacknowledged"`
		}
		path := "/api/queues/" + url.PathEscape(e.guaranteedFloor.vhost) + "/" + url.PathEscape(topology.RequestQueue)
		if err := testenv.Management(http.MethodGet, path, "", &q); err != nil {
			return err
		}
		if q.Unacked != 0 {
			return fmt.Errorf("%d requests unacked", q.Unacked)
		}
		return nil
	})
}

// floorConsumer reads, from the management API, how the floor in vhost consumes the
// request queue and whether that channel is in confirm mode.
func floorConsumer(vhost string) (ackRequired bool, prefetch int, confirm bool, err error) {
	var consumers []struct {
		AckRequired bool `json:"ack_required"`
		Prefetch    int  `json:"prefetch_count"`
		Queue       struct {
			Name string `json:"name"`
		} `json:"queue"`
		Channel struct {
			Name string `json:"name"`
		} `json:"channel_details"`
	}
	if err := testenv.Management(http.MethodGet, "/api/consumers/"+url.PathEscape(vhost), "", &consumers); err != nil {
		return false, 0, false, fmt.Errorf("consumers of %s: %w", vhost, err)
	}
	for _, c := range consumers {
		if c.Queue.Name != topology.RequestQueue {
			continue
		}
		var ch struct {
			Confirm bool `json:"confirm"`
		}
		if err := testenv.Management(http.MethodGet, "/api/channels/"+url.PathEscape(c.Channel.Name), "", &ch); err != nil {
			return false, 0, false, fmt.Errorf("channel %s: %w", c.Channel.Name, err)
		}
		return c.AckRequired, c.Prefetch, ch.Confirm, nil
	}
	return false, 0, false, fmt.Errorf("no consumer of %s in %s yet", topology.RequestQueue, vhost)
}
