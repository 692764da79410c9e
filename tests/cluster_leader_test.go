//go:build cluster

package tests

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/testenv"
)

// reLeaderGauge matches the leadership gauges of syncd's /metrics: the notifier's, the
// binder's and each read model's projector.
var reLeaderGauge = regexp.MustCompile(`^(syncd_notifier_leader|syncd_binder_leader|syncd_projector_active)(\{model="([^"]+)"\})? ([0-9.e+-]+)$`)

// leaderships reads a syncd process's /metrics and returns the leaderships it holds
// ("notifier", "binder", "projector:<model>") and all those it competes for.
func leaderships(p *proc) (held, competes []string, err error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.http + "/metrics")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := reLeaderGauge.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		role := strings.TrimSuffix(strings.TrimPrefix(m[1], "syncd_"), "_leader")
		if m[1] == "syncd_projector_active" {
			role = "projector:" + m[3]
		}
		competes = append(competes, role)
		if m[4] == "1" {
			held = append(held, role)
		}
	}
	return held, competes, sc.Err()
}

// leaderMap returns, for every leadership some live process competes for, the processes
// holding it (by index in ps; nil entries are dead processes and skipped). It fails when
// a process's /metrics cannot be read.
func leaderMap(ps []*proc) (map[string][]int, error) {
	holders := map[string][]int{}
	for i, p := range ps {
		if p == nil {
			continue
		}
		held, competes, err := leaderships(p)
		if err != nil {
			return nil, fmt.Errorf("syncd %d: %w", i, err)
		}
		for _, r := range competes {
			if _, ok := holders[r]; !ok {
				holders[r] = nil
			}
		}
		for _, r := range held {
			holders[r] = append(holders[r], i)
		}
	}
	return holders, nil
}

// oneLeaderEach returns nil when every leadership in want is held by exactly one process.
func oneLeaderEach(holders map[string][]int, want []string) error {
	for _, r := range want {
		if len(holders[r]) != 1 {
			return fmt.Errorf("%s held by %v, want exactly one process (all: %v)", r, holders[r], holders)
		}
	}
	return nil
}

// awaitLeaders waits until every leadership the processes compete for (at least the
// notifier, the binder and two read models) has exactly one holder, and returns them.
func awaitLeaders(t *testing.T, ps []*proc) (roles []string, holders map[string][]int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		h, err := leaderMap(ps)
		if err != nil {
			return err
		}
		roles = roles[:0]
		for r := range h {
			roles = append(roles, r)
		}
		sort.Strings(roles)
		if len(roles) < 4 {
			return fmt.Errorf("leaderships competed for: %v", roles)
		}
		holders = h
		return oneLeaderEach(h, roles)
	})
	return roles, holders
}

// Issue 15 item 5: three syncd processes on the cluster (three broker URLs, the
// multi-host DSN), roles duplicated on two and the third serving requests only, devices of
// two users committing to a personal and a shared workspace. The process holding the
// notifier's leadership (read from /metrics) is SIGKILLed under load; each leadership it
// held moves to the other full process, commits go on, and afterwards every acknowledged
// commit is in getChanges, every device saw every workspaceVersion once and in order
// (catching up where it saw a gap), and `projections verify` and `audit verify --all`
// pass. Direct publishing is off, so that every notification depends on the notifier.
func TestClusterLeaderKill(t *testing.T) {
	c := clusterUp(t)
	s := c.services()
	ps := []*proc{
		startSyncd(t, s, "-roles", "rpc,projector,notifier,binder", "-direct-publish=false"),
		startSyncd(t, s, "-roles", "rpc,projector,notifier,binder", "-direct-publish=false"),
		startSyncd(t, s, "-roles", "rpc", "-direct-publish=false"),
	}
	roles, before := awaitLeaders(t, ps)
	if _, competes, err := leaderships(ps[2]); err != nil || len(competes) != 0 {
		t.Fatalf("the rpc-only process competes for %v (%v)", competes, err)
	}
	victim := before["notifier"][0]
	var moved []string
	for r, h := range before {
		if h[0] == victim {
			moved = append(moved, r)
		}
	}
	t.Logf("leaderships before the kill: %v; SIGKILL syncd %d, holding %v", before, victim, moved)

	alice, bob := c.addUser(t, "Alice"), c.addUser(t, "Bob")
	shared := sharedWorkspace(t, s, alice, "Team", bob)
	devs := []clusterDevice{
		{"a1", dialDevice(t, c.userURLs(t, alice), alice.id, "a1"), []uuid.UUID{alice.workspace, shared}},
		{"a2", dialDevice(t, c.userURLs(t, alice), alice.id, "a2"), []uuid.UUID{alice.workspace, shared}},
		{"b1", dialDevice(t, c.userURLs(t, bob), bob.id, "b1"), []uuid.UUID{bob.workspace, shared}},
	}
	stop := make(chan struct{})
	var l load
	l.run(stop, devs[0].d, alice.workspace, "a1-own")
	l.run(stop, devs[1].d, shared, "a2-team")
	l.run(stop, devs[2].d, shared, "b1-team")
	l.run(stop, devs[2].d, bob.workspace, "b1-own")
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			l.wg.Wait()
		}
	}()
	l.waitMore(t, 40, 90*time.Second)

	atKill := l.count()
	killed := time.Now()
	ps[victim].kill()
	ps[victim] = nil
	testenv.Eventually(t, 60*time.Second, func() error {
		h, err := leaderMap(ps)
		if err != nil {
			return err
		}
		return oneLeaderEach(h, roles)
	})
	took := time.Since(killed)
	l.waitMore(t, 40, 120*time.Second)
	l.mu.Lock()
	resumed := l.acked[atKill].at // the first commit acknowledged after the kill
	l.mu.Unlock()
	after, err := leaderMap(ps)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leaderships after: %v, all held again within %v; first commit acknowledged after the kill %v later",
		after, took.Round(time.Millisecond), resumed.Sub(killed).Round(time.Millisecond))
	close(stop)
	l.wg.Wait()
	stopped = true
	t.Logf("%d commits acknowledged, %d not: %v", l.count(), l.fails.Load(), l.errors)
	verifyAcknowledged(t, &l, devs)
	verifyHistory(t, s)
}

// clusterDevice is a device of a cluster test and the workspaces it follows.
type clusterDevice struct {
	name string
	d    *device
	wss  []uuid.UUID
}

// verifyAcknowledged checks, after the load stopped, that every acknowledged commit is
// in getChanges of its workspace, and that every device reached the last version of each
// of its workspaces having seen every version once and in order.
func verifyAcknowledged(t *testing.T, l *load, devs []clusterDevice) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reader := map[uuid.UUID]*device{}
	for _, cd := range devs {
		for _, ws := range cd.wss {
			if reader[ws] == nil {
				reader[ws] = cd.d
			}
		}
	}
	last := map[uuid.UUID]int64{}
	for ws, rd := range reader {
		items, err := rd.c.GetChanges(ctx, ws)
		if err != nil {
			t.Fatalf("getChanges %s: %v", ws, err)
		}
		have := map[string]bool{}
		for _, it := range items {
			have[it.Filename] = true
		}
		l.mu.Lock()
		for _, a := range l.acked {
			if a.ws != ws {
				continue
			}
			if !have[a.name] {
				t.Errorf("acknowledged commit of %s (workspace %s version %d) missing from getChanges", a.name, ws, a.version)
			}
			last[ws] = max(last[ws], a.version)
		}
		l.mu.Unlock()
		page, err := rd.c.GetChangesSince(ctx, ws, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		last[ws] = max(last[ws], page.WorkspaceVersion)
	}
	for _, cd := range devs {
		testenv.Eventually(t, 60*time.Second, func() error {
			for _, ws := range cd.wss {
				if v := cd.d.version(ws); v != last[ws] {
					return fmt.Errorf("device %s at version %d of %s, want %d", cd.name, v, ws, last[ws])
				}
			}
			return nil
		})
		cd.d.mu.Lock()
		if len(cd.d.misfits) > 0 {
			t.Errorf("device %s saw versions out of order or twice: %v", cd.name, cd.d.misfits)
		}
		t.Logf("device %s: %d catch-up pages", cd.name, cd.d.pages)
		cd.d.mu.Unlock()
	}
}
