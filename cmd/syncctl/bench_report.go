package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// benchReport is the JSON document of --json: one run, its settings and every scenario.
type benchReport struct {
	Started   time.Time        `json:"started"`
	Load      string           `json:"load_average"` // /proc/loadavg's 1, 5 and 15 minutes at the start
	CPUs      int              `json:"cpus"`
	Config    reportedConfig   `json:"config"`
	Scenarios []scenarioResult `json:"scenarios"`
}

// reportedConfig is the part of the configuration that shapes the figures.
type reportedConfig struct {
	Scenarios       []string `json:"scenarios"`
	Commits         int      `json:"commits,omitempty"`
	DurationSeconds float64  `json:"duration_seconds,omitempty"`
	CommitItems     int      `json:"commit_items"`
	Baselines       bool     `json:"baselines"`
	MetricsURL      string   `json:"metrics_url,omitempty"`
}

func reportConfig(c benchConfig) reportedConfig {
	return reportedConfig{Scenarios: c.scenarios, Commits: c.commits, DurationSeconds: c.duration.Seconds(),
		CommitItems: c.commitItems, Baselines: c.baselines, MetricsURL: c.metricsURL}
}

// scenarioResult is one scenario: the server's figures and, measured right after with
// the same concurrency, its baselines.
type scenarioResult struct {
	Name       string `json:"name"`
	Unit       string `json:"unit"` // what one operation is: "commit" or "getChanges"
	Devices    int    `json:"devices"`
	Workspaces int    `json:"workspaces"`
	Workers    int    `json:"workers"` // operations in flight
	Items      int    `json:"items,omitempty"`
	FillBatch  int    `json:"fill_batch,omitempty"` // getchanges: items per commit that the server took
	// RatePerSecond is notify's pace: commits sent per second in all.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// Server is the measured syncd; Insert the one-row INSERTs; Floor the trivial
	// responder through the same client path. The baselines are absent with
	// --baselines=false, and Insert for getchanges.
	Server phaseResult  `json:"server"`
	Insert *phaseResult `json:"insert,omitempty"`
	Floor  *phaseResult `json:"floor,omitempty"`
	// GuaranteedFloor is the floor doing the broker work of the server's guarantees
	// (manual acks, publisher confirms: bench_floor.go); commit scenarios only.
	GuaranteedFloor *phaseResult `json:"guaranteed_floor,omitempty"`
	Ratios          ratios       `json:"ratios"`
	// From syncd's /metrics (--metrics-url): process CPU seconds over the server phase
	// per operation, and the resident memory after it.
	ServerCPUMsPerOp *float64 `json:"server_cpu_ms_per_op,omitempty"`
	ServerRSSBytes   *int64   `json:"server_rss_bytes,omitempty"`
	// ServerStages is where the server's time per commit went, stage by stage (syncd
	// -commit-stages; absent without it).
	ServerStages []stageFigure `json:"server_stages,omitempty"`
	// LocalCPU is the CPU per operation of the machine's PostgreSQL, RabbitMQ, syncd and
	// bench processes over the server phase (--local-cpu).
	LocalCPU []procCPU `json:"local_cpu_ms_per_op,omitempty"`
	// Error ends the scenario early: its figures are those measured before it.
	Error string `json:"error,omitempty"`
}

// phaseResult is one measured phase. Latencies are of the operations that succeeded.
type phaseResult struct {
	Ops        int     `json:"ops"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Ms      float64 `json:"p50_ms"`
	P95Ms      float64 `json:"p95_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

// ratios compare the server with its baselines: throughput server/baseline (below 1:
// the server is slower), latency server/baseline (above 1: the server is slower).
// A ratio is absent when its baseline is.
type ratios struct {
	ThroughputVsFloor *float64 `json:"throughput_server_over_floor,omitempty"`
	P50VsFloor        *float64 `json:"p50_server_over_floor,omitempty"`
	P99VsFloor        *float64 `json:"p99_server_over_floor,omitempty"`
	// Against the guaranteed floor.
	ThroughputVsGuaranteed *float64 `json:"throughput_server_over_guaranteed_floor,omitempty"`
	P50VsGuaranteed        *float64 `json:"p50_server_over_guaranteed_floor,omitempty"`
	P99VsGuaranteed        *float64 `json:"p99_server_over_guaranteed_floor,omitempty"`
	ThroughputVsInsert     *float64 `json:"throughput_server_over_insert,omitempty"`
	P50VsInsert            *float64 `json:"p50_server_over_insert,omitempty"`
	P99VsInsert            *float64 `json:"p99_server_over_insert,omitempty"`
}

// percentile returns the nearest-rank p-quantile (0 < p <= 1) of sorted, 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// summarize turns a phase's measurements into its figures.
func summarize(r phaseRun) phaseResult {
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	p := phaseResult{Ops: len(s), Failed: r.failed, Seconds: math.Round(r.elapsed.Seconds()*1000) / 1000}
	if r.elapsed > 0 {
		p.PerSecond = math.Round(float64(len(s))/r.elapsed.Seconds()*10) / 10
	}
	if len(s) > 0 {
		p.P50Ms, p.P95Ms, p.P99Ms, p.MaxMs = ms(percentile(s, 0.50)), ms(percentile(s, 0.95)), ms(percentile(s, 0.99)), ms(s[len(s)-1])
	}
	if r.firstErr != nil {
		p.FirstError = r.firstErr.Error()
	}
	return p
}

// ratio is a/b rounded to 3 significant digits, nil when b is 0 or a baseline is absent.
func ratio(a, b float64) *float64 {
	if b == 0 || a == 0 {
		return nil
	}
	r := a / b
	scale := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(r))))
	r = math.Round(r*scale) / scale
	return &r
}

func ratiosOf(s scenarioResult) ratios {
	var r ratios
	if f := s.Floor; f != nil {
		r.ThroughputVsFloor, r.P50VsFloor, r.P99VsFloor = ratio(s.Server.PerSecond, f.PerSecond), ratio(s.Server.P50Ms, f.P50Ms), ratio(s.Server.P99Ms, f.P99Ms)
	}
	if g := s.GuaranteedFloor; g != nil {
		r.ThroughputVsGuaranteed, r.P50VsGuaranteed, r.P99VsGuaranteed = ratio(s.Server.PerSecond, g.PerSecond), ratio(s.Server.P50Ms, g.P50Ms), ratio(s.Server.P99Ms, g.P99Ms)
	}
	if i := s.Insert; i != nil {
		r.ThroughputVsInsert, r.P50VsInsert, r.P99VsInsert = ratio(s.Server.PerSecond, i.PerSecond), ratio(s.Server.P50Ms, i.P50Ms), ratio(s.Server.P99Ms, i.P99Ms)
	}
	return r
}

// printScenario writes one scenario as text.
func printScenario(w io.Writer, s scenarioResult) {
	fmt.Fprintf(w, "%s: %d device(s), %d workspace(s), %d in flight", s.Name, s.Devices, s.Workspaces, s.Workers)
	if s.Items > 0 {
		fmt.Fprintf(w, ", %d items (filled in commits of %d)", s.Items, s.FillBatch)
	}
	if s.RatePerSecond > 0 {
		fmt.Fprintf(w, ", paced at %.1f commits/s; latency: commit sent → the other device's notifyCommit", s.RatePerSecond)
	}
	fmt.Fprintln(w)
	line := func(what string, p *phaseResult) {
		if p == nil {
			return
		}
		fmt.Fprintf(w, "  %-7s %6d %s in %6.2fs: %8.1f/s  p50 %7.2f ms  p95 %7.2f ms  p99 %7.2f ms  max %7.2f ms",
			what, p.Ops, unitPlural(s.Unit), p.Seconds, p.PerSecond, p.P50Ms, p.P95Ms, p.P99Ms, p.MaxMs)
		if p.Failed > 0 {
			fmt.Fprintf(w, "  FAILED %d (first: %s)", p.Failed, p.FirstError)
		}
		fmt.Fprintln(w)
	}
	line("server", &s.Server)
	line("floor", s.Floor)
	line("g-floor", s.GuaranteedFloor)
	line("insert", s.Insert)
	if r := s.Ratios; r != (ratios{}) {
		var parts []string
		if r.ThroughputVsFloor != nil {
			parts = append(parts, fmt.Sprintf("server/floor: throughput %s, p50 %s, p99 %s", fmtRatio(r.ThroughputVsFloor), fmtRatio(r.P50VsFloor), fmtRatio(r.P99VsFloor)))
		}
		if r.ThroughputVsGuaranteed != nil {
			parts = append(parts, fmt.Sprintf("server/g-floor: throughput %s, p50 %s, p99 %s", fmtRatio(r.ThroughputVsGuaranteed), fmtRatio(r.P50VsGuaranteed), fmtRatio(r.P99VsGuaranteed)))
		}
		if r.ThroughputVsInsert != nil {
			parts = append(parts, fmt.Sprintf("server/insert: throughput %s, p50 %s, p99 %s", fmtRatio(r.ThroughputVsInsert), fmtRatio(r.P50VsInsert), fmtRatio(r.P99VsInsert)))
		}
		fmt.Fprintf(w, "  ratios  %s\n", strings.Join(parts, "; "))
	}
	if s.ServerCPUMsPerOp != nil {
		fmt.Fprintf(w, "  server CPU %.3f ms per %s\n", *s.ServerCPUMsPerOp, s.Unit)
	}
	printStages(w, s.ServerStages)
	printLocalCPU(w, s.LocalCPU, s.Unit, runtime.NumCPU())
	if s.ServerRSSBytes != nil {
		fmt.Fprintf(w, "  server RSS after: %.1f MB\n", float64(*s.ServerRSSBytes)/1e6)
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  ERROR: %s\n", s.Error)
	}
}

func unitPlural(unit string) string {
	if unit == "commit" {
		return "commits"
	}
	return "calls"
}

func fmtRatio(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%g", *r)
}

// loadAverage is /proc/loadavg's three averages, or "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
