package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stacksync-es/syncservice/domain"
)

// The files of `syncctl bench`: bench.go (command, flags, the run), bench_env.go (the
// server's users and devices), bench_drive.go (workers and the measured phases),
// bench_scenarios.go (the four scenarios), bench_floor.go (the trivial responder),
// bench_insert.go (the one-row INSERT baseline), bench_report.go (statistics, ratios,
// text and JSON), bench_plot.go (the PNG) and bench_metrics.go (syncd's /metrics).

// Scenario names of --scenario.
const (
	scenarioSequential = "sequential"
	scenarioSpread     = "spread"
	scenarioHot        = "hot"
	scenarioGetChanges = "getchanges"
	scenarioNotify     = "notify"
)

var allScenarios = []string{scenarioSequential, scenarioSpread, scenarioHot, scenarioGetChanges, scenarioNotify}

// benchConfig is every setting of `syncctl bench`.
type benchConfig struct {
	amqpURL   string
	rabbitAPI string
	vhost     string
	trust     bool

	scenarios   []string
	workspaces  int // spread: devices, each in its own workspace
	workers     int // spread: workers in all (0: one per workspace); the old --concurrency
	devices     int // hot: devices of the one user
	inFlight    int // hot: commits in flight per device
	commits     int
	duration    time.Duration // instead of commits when > 0
	commitItems int
	items       int     // getchanges: items of the workspace
	fillBatch   int     // getchanges: items per commit while filling
	reads       int     // getchanges: calls timed
	rate        float64 // notify: commits per second in all (0: half of spread's throughput)
	metricsURL  string
	localCPU    bool // CPU per operation of the machine's postgres, RabbitMQ, syncd and bench processes
	baselines   bool
	jsonOut     bool
	plotFile    string
	cpuProfile  string // bench's own CPU profile (the client library's side of every scenario)
}

// defaultBenchConfig is the configuration of a bare `syncctl bench` (broker settings
// come from the environment in benchCmd).
func defaultBenchConfig() benchConfig {
	return benchConfig{vhost: "/", scenarios: []string{scenarioSpread}, workspaces: 16, devices: 2, inFlight: 4,
		commits: 2000, commitItems: 1, items: 10000, fillBatch: domain.DefaultMaxCommitItems, reads: 20, baselines: true}
}

// validate checks the configuration; it changes nothing.
func (c benchConfig) validate() error {
	var errs []error
	if len(c.scenarios) == 0 {
		errs = append(errs, errors.New("--scenario: name at least one of "+strings.Join(allScenarios, ", ")))
	}
	for _, s := range c.scenarios {
		if !slices.Contains(allScenarios, s) {
			errs = append(errs, fmt.Errorf("--scenario: unknown scenario %q (scenarios: %s)", s, strings.Join(allScenarios, ", ")))
		}
	}
	if c.workspaces < 1 || c.devices < 1 || c.inFlight < 1 || c.workers < 0 {
		errs = append(errs, errors.New("--workspaces, --devices and --in-flight must be at least 1 (--concurrency at least 0)"))
	}
	if c.duration < 0 || (c.duration == 0 && c.commits < 1) {
		errs = append(errs, errors.New("--commits must be at least 1, or --duration positive"))
	}
	if c.commitItems < 1 || c.commitItems > domain.DefaultMaxCommitItems {
		errs = append(errs, fmt.Errorf("--commit-items must be 1..%d", domain.DefaultMaxCommitItems))
	}
	if c.items < 1 || c.reads < 1 {
		errs = append(errs, errors.New("--items and --reads must be at least 1"))
	}
	if c.fillBatch < 1 || c.fillBatch > domain.DefaultMaxCommitItems {
		errs = append(errs, fmt.Errorf("--fill-batch must be 1..%d (the wire refuses larger commits)", domain.DefaultMaxCommitItems))
	}
	if c.rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if i := slices.Index(c.scenarios, scenarioNotify); i >= 0 && c.rate == 0 && !slices.Contains(c.scenarios[:i], scenarioSpread) {
		errs = append(errs, errors.New("--scenario notify: give --rate, or run spread before it (its pace is then half of spread's throughput)"))
	}
	if c.plotFile != "" && !strings.HasSuffix(strings.ToLower(c.plotFile), ".png") {
		errs = append(errs, fmt.Errorf("--plot %q: the file name must end in .png", c.plotFile))
	}
	if c.metricsURL != "" && !strings.HasPrefix(c.metricsURL, "http://") && !strings.HasPrefix(c.metricsURL, "https://") {
		errs = append(errs, fmt.Errorf("--metrics-url %q: not an http(s) URL", c.metricsURL))
	}
	return errors.Join(errs...)
}

// parseScenarios splits a comma list, dropping blanks and repeats.
func parseScenarios(s string) []string {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// benchFlagSet holds the flags of one `syncctl bench` command before they become a
// benchConfig (the scenario list is a string, and two old flags map onto new ones).
type benchFlagSet struct {
	cfg       benchConfig
	scenarios string
	users     int // old name of --workspaces
}

// config returns the validated configuration; changed reports the flags given.
func (f *benchFlagSet) config(changed func(string) bool) (benchConfig, error) {
	c := f.cfg
	c.scenarios = parseScenarios(f.scenarios)
	if changed("users") {
		if changed("workspaces") {
			return c, errors.New("--users is the old name of --workspaces: give one of them")
		}
		c.workspaces = f.users
	}
	if changed("commits") && changed("duration") {
		return c, errors.New("--commits and --duration are alternatives: give one of them")
	}
	if c.duration > 0 {
		c.commits = 0
	}
	return c, c.validate()
}

func benchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load a running syncd end to end through RabbitMQ, with baselines measured in the same run",
		Long:  benchLong,
		Args:  cobra.NoArgs,
	}
	fs := addBenchFlags(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := fs.config(cmd.Flags().Changed)
		if err != nil {
			return err
		}
		return runBench(cmd, cfg)
	}
	return c
}

const benchLong = `bench drives a running syncd with the Go client library, one scenario after another:

  sequential  1 device, 1 worker, commits of --commit-items new files; a commit is done
              when its own notifyCommit arrives on the device's event queue
  spread      --workspaces devices, each in its own user's workspace, one worker each
  hot         one workspace, --devices devices of its user, --in-flight commits each
  getchanges  a workspace of --items items (filled in commits of --fill-batch), then
              --reads getChanges calls timed end to end
  notify      --workspaces users with two devices each: the first commits at a fixed
              pace (--rate commits/s in all; by default half of spread's throughput
              in this run), the second listens; a latency is from the commit's send
              to the other device's notifyCommit (no baselines)

Each scenario runs --commits commits (or for --duration). Unless --baselines=false, each
scenario also measures, in the same run and with the same concurrency, one-row INSERTs
into a scratch table of the --pg database (each its own transaction, synchronous_commit
on) and the "floor": an in-process responder on a scratch vhost of the same broker that
answers every commit at once with a notifyCommit-shaped event (no database, no decision),
driven through the same client path. The plain floor takes requests with auto-ack and
publishes without confirms; the guaranteed floor ("g-floor", commit scenarios) does the
broker work the server's guarantees need: manual acks, each request acked once its
persistent answer is confirmed. It prints server/floor, server/g-floor and server/insert
ratios.
With --metrics-url (syncd's /metrics) it reports the server's CPU per commit and, after
getChanges, its resident memory. With --local-cpu (Linux; PostgreSQL, RabbitMQ and syncd
on this machine) it reports the CPU per operation of each of them and of bench itself, read
from /proc, and the rate at which together they would keep every core busy (meaningful
when nothing else uses those processes or the cores meanwhile).

Run it against a scratch database: the users it creates stay (their broker accounts are
deleted at the end). The management API (--rabbitmq-api) is needed for the broker
accounts (unless --trust) and for the floor's scratch vhost.`

// addBenchFlags registers the flags of `syncctl bench` on c.
func addBenchFlags(c *cobra.Command) *benchFlagSet {
	amqpDefault := os.Getenv("SYNCD_AMQP_URL")
	if amqpDefault == "" {
		amqpDefault = "amqp://guest:guest@127.0.0.1:5672/"
	}
	api := os.Getenv("SYNC_RABBITMQ_API")
	if api == "" {
		api = "http://guest:guest@127.0.0.1:15672"
	}
	fs := &benchFlagSet{cfg: defaultBenchConfig()}
	f, b := c.Flags(), &fs.cfg
	f.StringVar(&b.amqpURL, "amqp", amqpDefault, "broker URL (its host and vhost are used; with --trust also its login; the floor uses its login)")
	f.StringVar(&b.rabbitAPI, "rabbitmq-api", api, "management API with administrator credentials: users' broker accounts, the floor's scratch vhost")
	f.StringVar(&b.vhost, "vhost", b.vhost, "the vhost syncd serves")
	f.BoolVar(&b.trust, "trust", false, "the server runs with -auth trust: connect with --amqp's login, no user_id")
	f.StringVar(&fs.scenarios, "scenario", strings.Join(b.scenarios, ","), "comma list of scenarios: "+strings.Join(allScenarios, ", "))
	f.IntVar(&b.workspaces, "workspaces", b.workspaces, "spread: devices, each in its own workspace")
	f.IntVar(&b.devices, "devices", b.devices, "hot: devices of the workspace's user")
	f.IntVar(&b.inFlight, "in-flight", b.inFlight, "hot: commits each device keeps in flight")
	f.IntVar(&b.commits, "commits", b.commits, "commits per scenario and baseline")
	f.DurationVar(&b.duration, "duration", 0, "run each scenario and baseline this long instead of --commits")
	f.IntVar(&b.commitItems, "commit-items", b.commitItems, "new files per commit")
	f.IntVar(&b.items, "items", b.items, "getchanges: items of the workspace")
	f.IntVar(&b.fillBatch, "fill-batch", b.fillBatch, "getchanges: items per commit while filling the workspace (halved while the server refuses a commit as too large)")
	f.IntVar(&b.reads, "reads", b.reads, "getchanges: getChanges calls timed")
	f.Float64Var(&b.rate, "rate", 0, "notify: commits per second in all (0: half of the spread scenario's throughput measured before it)")
	f.StringVar(&b.metricsURL, "metrics-url", "", "syncd's /metrics (e.g. http://127.0.0.1:9464/metrics): CPU per commit, resident memory")
	f.BoolVar(&b.localCPU, "local-cpu", false, "Linux, with PostgreSQL, RabbitMQ and syncd on this machine: CPU per operation of each (from /proc) and the rate at which they would keep every core busy")
	f.BoolVar(&b.baselines, "baselines", true, "measure the INSERT and floor baselines in the same run")
	f.BoolVar(&b.jsonOut, "json", false, "print one JSON document instead of text")
	f.StringVar(&b.cpuProfile, "cpu-profile", "", "write bench's own CPU profile (the devices' side: the client library) into this file")
	f.StringVar(&b.plotFile, "plot", "", "draw throughput and latency percentiles per scenario into this PNG file")
	// The flags of the first bench, mapped: --users N is --workspaces N; --concurrency C
	// runs spread with C workers over the workspaces.
	f.IntVar(&fs.users, "users", 0, "old name of --workspaces")
	f.IntVar(&b.workers, "concurrency", 0, "spread: workers in all, over the workspaces (0: one per workspace)")
	_ = f.MarkDeprecated("users", "use --workspaces")
	return fs
}

// runBench runs the scenarios one after another and reports them.
func runBench(cmd *cobra.Command, cfg benchConfig) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	env, err := openBenchEnv(ctx, cfg)
	if err != nil {
		return err
	}
	defer env.close()
	if cfg.cpuProfile != "" {
		stop, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	rep := benchReport{Started: time.Now().UTC(), Load: loadAverage(), CPUs: runtime.NumCPU(), Config: reportConfig(cfg)}
	if !cfg.jsonOut {
		fmt.Fprintf(out, "bench %s (load average %s, %d CPUs)\n", strings.Join(cfg.scenarios, ","), rep.Load, rep.CPUs)
	}
	var failed int64
	var errs []string
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		// A scenario that fails is reported with what it measured; the next one runs.
		res, err := env.runScenario(ctx, name)
		if err != nil {
			res.Error = err.Error()
			errs = append(errs, fmt.Sprintf("scenario %s: %v", name, err))
		}
		res.Ratios = ratiosOf(res)
		if name == scenarioSpread && res.Error == "" {
			env.spreadPeak = res.Server.PerSecond
		}
		failed += res.Server.Failed
		rep.Scenarios = append(rep.Scenarios, res)
		if !cfg.jsonOut {
			printScenario(out, res)
		}
	}
	if cfg.jsonOut {
		e := json.NewEncoder(out)
		e.SetIndent("", "  ")
		if err := e.Encode(rep); err != nil {
			return fmt.Errorf("bench: write JSON: %w", err)
		}
	}
	if cfg.plotFile != "" {
		if err := drawPlot(cfg.plotFile, rep); err != nil {
			return err
		}
		if !cfg.jsonOut {
			fmt.Fprintf(out, "plot written to %s\n", cfg.plotFile)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: %s", strings.Join(errs, "; "))
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("bench: %d server operations failed", failed)}
	}
	return ctx.Err()
}

func init() { rootCmd.AddCommand(benchCmd()) }
