package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

// layout is how a scenario's devices are spread: users (each with their personal
// workspace), devices per user, and workers in all (worker w uses device w mod devices).
type layout struct {
	users, devicesPerUser, workers int
}

// layoutOf returns the layout of a scenario under c.
func (c benchConfig) layoutOf(scenario string) layout {
	switch scenario {
	case scenarioSpread:
		workers := c.workers
		if workers == 0 {
			workers = c.workspaces
		}
		return layout{users: c.workspaces, devicesPerUser: 1, workers: workers}
	case scenarioHot:
		return layout{users: 1, devicesPerUser: c.devices, workers: c.devices * c.inFlight}
	default: // sequential, getchanges
		return layout{users: 1, devicesPerUser: 1, workers: 1}
	}
}

func (e *benchEnv) stopRule() stopRule {
	return stopRule{ops: int64(e.cfg.commits), duration: e.cfg.duration}
}

func (e *benchEnv) runScenario(ctx context.Context, name string) (scenarioResult, error) {
	switch name {
	case scenarioGetChanges:
		return e.runGetChanges(ctx)
	case scenarioNotify:
		return e.runNotify(ctx)
	}
	return e.runCommits(ctx, name)
}

// runCommits measures a commit scenario against the server, then its baselines with
// the same layout.
func (e *benchEnv) runCommits(ctx context.Context, name string) (scenarioResult, error) {
	l := e.cfg.layoutOf(name)
	res := scenarioResult{Name: name, Unit: "commit", Devices: l.users * l.devicesPerUser, Workspaces: l.users, Workers: l.workers}
	devs, err := e.serverDevices(ctx, name, l.users, l.devicesPerUser)
	defer closeDevices(devs)
	if err != nil {
		return res, err
	}
	tag := e.run + "-" + name
	if err := warmUp(ctx, devs, tag); err != nil {
		return res, err
	}
	before, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	res.Server = summarize(drive(ctx, l.workers, e.stopRule(), commitOp(devs, tag, e.cfg.commitItems)))
	after, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	res.ServerCPUMsPerOp = cpuPerOp(before, after, res.Server.Ops)
	res.LocalCPU = localCPUPerOp(before.procs, after.procs, res.Server.Ops)
	res.ServerStages = stagesBetween(before, after)
	closeDevices(devs) // the baselines run without the server's devices connected
	if !e.cfg.baselines || ctx.Err() != nil {
		return res, ctx.Err()
	}
	ins, err := e.insertBaseline(ctx, l.workers, e.stopRule())
	if err != nil {
		return res, err
	}
	res.Insert = &ins
	if res.Floor, err = e.floorCommits(ctx, l, tag, false); err != nil {
		return res, err
	}
	res.GuaranteedFloor, err = e.floorCommits(ctx, l, tag, true)
	return res, err
}

// floorCommits drives the plain or the guaranteed floor with a scenario's layout.
func (e *benchEnv) floorCommits(ctx context.Context, l layout, tag string, guaranteed bool) (*phaseResult, error) {
	f, err := e.startedFloor(ctx, guaranteed)
	if err != nil {
		return nil, err
	}
	name := "floor"
	if guaranteed {
		name = "guaranteed floor"
	}
	fdevs, err := f.devices(ctx, l.users, l.devicesPerUser)
	defer closeDevices(fdevs)
	if err != nil {
		return nil, err
	}
	ftag := tag + "-" + strings.ReplaceAll(name, " ", "-")
	if err := warmUp(ctx, fdevs, ftag); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	fl := summarize(drive(ctx, l.workers, e.stopRule(), commitOp(fdevs, ftag, e.cfg.commitItems)))
	return &fl, ctx.Err()
}

// startedFloor starts the plain or the guaranteed floor's responder once per run.
func (e *benchEnv) startedFloor(ctx context.Context, guaranteed bool) (*floorEnv, error) {
	slot := &e.floor
	if guaranteed {
		slot = &e.guaranteedFloor
	}
	if *slot != nil {
		return *slot, nil
	}
	f, err := startFloor(ctx, e.cfg, e.run, e.base, guaranteed)
	if err != nil {
		return nil, err
	}
	*slot = f
	return f, nil
}

// runGetChanges fills a workspace with --items items, then times --reads getChanges
// calls end to end; the floor answers the same number of items, encoded once.
func (e *benchEnv) runGetChanges(ctx context.Context) (scenarioResult, error) {
	res := scenarioResult{Name: scenarioGetChanges, Unit: "getChanges", Devices: 1, Workspaces: 1, Workers: 1}
	devs, err := e.serverDevices(ctx, scenarioGetChanges, 1, 1)
	defer closeDevices(devs)
	if err != nil {
		return res, err
	}
	d := devs[0]
	if res.FillBatch, err = fill(ctx, d, e.run+"-fill", e.cfg.items, e.cfg.fillBatch); err != nil {
		return res, err
	}
	items, err := d.cl.GetChanges(ctx, d.workspace) // untimed: warm, and the count to expect
	if err != nil {
		return res, fmt.Errorf("getChanges: %w", err)
	}
	if len(items) < e.cfg.items {
		return res, fmt.Errorf("getChanges answered %d items, want at least %d", len(items), e.cfg.items)
	}
	res.Items = len(items)
	read := func(dev benchDevice) func(ctx context.Context, _ int, _ int64) error {
		return func(ctx context.Context, _ int, _ int64) error {
			items, err := dev.cl.GetChanges(ctx, dev.workspace)
			if err == nil && len(items) != res.Items {
				err = fmt.Errorf("getChanges answered %d items, want %d", len(items), res.Items)
			}
			return err
		}
	}
	reads := stopRule{ops: int64(e.cfg.reads)}
	before, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	res.Server = summarize(drive(ctx, 1, reads, read(d)))
	after, err := e.sample(ctx)
	if err != nil {
		return res, err
	}
	res.ServerCPUMsPerOp, res.ServerRSSBytes = cpuPerOp(before, after, res.Server.Ops), rssOf(after)
	res.LocalCPU = localCPUPerOp(before.procs, after.procs, res.Server.Ops)
	closeDevices(devs)
	if !e.cfg.baselines || ctx.Err() != nil {
		return res, ctx.Err()
	}
	f, err := e.startedFloor(ctx, false)
	if err != nil {
		return res, err
	}
	fdevs, err := f.devices(ctx, 1, 1)
	defer closeDevices(fdevs)
	if err != nil {
		return res, err
	}
	if err := f.resp.setChanges(fdevs[0].workspace, res.Items); err != nil {
		return res, err
	}
	if err := read(fdevs[0])(ctx, 0, 0); err != nil {
		return res, fmt.Errorf("floor: %w", err)
	}
	fl := summarize(drive(ctx, 1, reads, read(fdevs[0])))
	res.Floor = &fl
	return res, ctx.Err()
}

// fill commits n new files to the device's workspace in commits of at most batch,
// halving the batch while the server refuses a commit as invalid (its event would be
// over the store's record limit, or the items over -max-commit-items); it returns the
// batch it ended with.
func fill(ctx context.Context, d benchDevice, tag string, n, batch int) (int, error) {
	for seq := int64(0); n > 0; seq++ {
		size := min(n, batch)
		err := commitOp([]benchDevice{d}, tag, size)(ctx, 0, seq)
		if errors.Is(err, protocol.ErrInvalid) && batch > 1 {
			batch /= 2
			continue
		}
		if err != nil {
			return batch, fmt.Errorf("fill the workspace (commits of %d items): %w", size, err)
		}
		n -= size
	}
	return batch, nil
}
