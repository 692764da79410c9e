package main

import (
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// Nearest-rank percentiles: p50 of 1..100 is 50, p99 is 99, p100 the largest; one
// sample is every percentile; no sample is 0.
func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.50, 50 * time.Millisecond}, {0.95, 95 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v of 1..100 ms: %v, want %v", c.p*100, got, c.want)
		}
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("p99 of one sample: %v", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of none: %v", got)
	}
	// Ten samples: p95 and p99 are the largest, p50 the fifth.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(ten, 0.5) != 5 || percentile(ten, 0.95) != 10 || percentile(ten, 0.99) != 10 {
		t.Errorf("p50/p95/p99 of 1..10: %v %v %v", percentile(ten, 0.5), percentile(ten, 0.95), percentile(ten, 0.99))
	}
}

// summarize sorts what drive measured (in any order), counts only what succeeded and
// keeps the first error.
func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 200; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	p := summarize(phaseRun{latencies: lat, failed: 3, elapsed: 4 * time.Second, firstErr: errors.New("boom")})
	want := phaseResult{Ops: 200, Failed: 3, Seconds: 4, PerSecond: 50, P50Ms: 100, P95Ms: 190, P99Ms: 198, MaxMs: 200, FirstError: "boom"}
	if p != want {
		t.Errorf("summary %+v\nwant    %+v", p, want)
	}
	if z := summarize(phaseRun{}); z != (phaseResult{}) {
		t.Errorf("empty phase: %+v", z)
	}
}

func f64(v float64) *float64 { return &v }

// The ratios divide the server's figures by each baseline's; a missing baseline (or a
// zero) gives no ratio rather than 0 or +Inf.
func TestRatios(t *testing.T) {
	s := scenarioResult{
		Server: phaseResult{PerSecond: 200, P50Ms: 5, P99Ms: 30},
		Floor:  &phaseResult{PerSecond: 1000, P50Ms: 1, P99Ms: 4},
		Insert: &phaseResult{PerSecond: 3000, P50Ms: 0.25, P99Ms: 0},
	}
	r := ratiosOf(s)
	check := func(name string, got *float64, want *float64) {
		t.Helper()
		switch {
		case want == nil && got != nil:
			t.Errorf("%s: %v, want none", name, *got)
		case want != nil && (got == nil || *got != *want):
			t.Errorf("%s: %v, want %v", name, got, *want)
		}
	}
	check("throughput/floor", r.ThroughputVsFloor, f64(0.2))
	check("p50/floor", r.P50VsFloor, f64(5))
	check("p99/floor", r.P99VsFloor, f64(7.5))
	check("throughput/insert", r.ThroughputVsInsert, f64(0.0667))
	check("p50/insert", r.P50VsInsert, f64(20))
	check("p99/insert", r.P99VsInsert, nil)
	if r := ratiosOf(scenarioResult{Server: s.Server}); r != (ratios{}) {
		t.Errorf("no baselines: %+v, want no ratios", r)
	}
}

// The JSON document tools read: field names, nesting, and absent baselines omitted.
func TestReportJSONShape(t *testing.T) {
	cpu, rss := 0.66, int64(392e6)
	sc := scenarioResult{Name: "spread", Unit: "commit", Devices: 16, Workspaces: 16, Workers: 16,
		Server: phaseResult{Ops: 2000, PerSecond: 777, P50Ms: 19, P95Ms: 30, P99Ms: 36, MaxMs: 50},
		Floor:  &phaseResult{Ops: 2000, PerSecond: 2693, P99Ms: 15}, ServerCPUMsPerOp: &cpu}
	sc.Ratios = ratiosOf(sc)
	gc := scenarioResult{Name: "getchanges", Unit: "getChanges", Devices: 1, Workspaces: 1, Workers: 1, Items: 10000,
		Server: phaseResult{Ops: 20, P50Ms: 148}, ServerRSSBytes: &rss}
	rep := benchReport{Started: time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC), Load: "1.0 2.0 3.0", CPUs: 2,
		Config: reportedConfig{Scenarios: []string{"spread", "getchanges"}, Commits: 2000, CommitItems: 1, Baselines: true}, Scenarios: []scenarioResult{sc, gc}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	get := func(path ...any) any {
		var v any = doc
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[k]
			case int:
				a, _ := v.([]any)
				if k >= len(a) {
					return nil
				}
				v = a[k]
			}
		}
		return v
	}
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"started"}, "2026-12-06T06:00:00Z"},
		{[]any{"load_average"}, "1.0 2.0 3.0"},
		{[]any{"cpus"}, 2.0},
		{[]any{"config", "commits"}, 2000.0},
		{[]any{"config", "scenarios", 1}, "getchanges"},
		{[]any{"scenarios", 0, "name"}, "spread"},
		{[]any{"scenarios", 0, "unit"}, "commit"},
		{[]any{"scenarios", 0, "workers"}, 16.0},
		{[]any{"scenarios", 0, "server", "per_second"}, 777.0},
		{[]any{"scenarios", 0, "server", "p99_ms"}, 36.0},
		{[]any{"scenarios", 0, "floor", "per_second"}, 2693.0},
		{[]any{"scenarios", 0, "ratios", "throughput_server_over_floor"}, 0.289},
		{[]any{"scenarios", 0, "ratios", "p99_server_over_floor"}, 2.4},
		{[]any{"scenarios", 0, "server_cpu_ms_per_op"}, 0.66},
		{[]any{"scenarios", 0, "insert"}, nil},
		{[]any{"scenarios", 0, "ratios", "throughput_server_over_insert"}, nil},
		{[]any{"scenarios", 1, "items"}, 10000.0},
		{[]any{"scenarios", 1, "server_rss_bytes"}, 392e6},
		{[]any{"scenarios", 1, "floor"}, nil},
		{[]any{"scenarios", 1, "server_cpu_ms_per_op"}, nil},
	} {
		if got := get(c.path...); got != c.want {
			t.Errorf("%v: %#v, want %#v", c.path, got, c.want)
		}
	}
	if m, _ := get("scenarios", 1).(map[string]any); m == nil || slices.Contains(keys(m), "first_error") {
		t.Errorf("getchanges scenario %v", m)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Flags: defaults, the scenario list, the old flags mapped onto the new ones, and every
// refusal.
func TestBenchFlags(t *testing.T) {
	parse := func(args ...string) (benchConfig, error) {
		c := &cobra.Command{Use: "bench"}
		fs := addBenchFlags(c)
		c.SetErr(&strings.Builder{}) // deprecation notices
		if err := c.ParseFlags(args); err != nil {
			return benchConfig{}, err
		}
		return fs.config(c.Flags().Changed)
	}
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.scenarios, []string{"spread"}) || cfg.commits != 2000 || cfg.workspaces != 16 || !cfg.baselines || cfg.layoutOf("spread").workers != 16 {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = parse("--scenario", " Sequential,hot,,hot ,getchanges", "--devices", "3", "--in-flight", "5")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.scenarios, []string{"sequential", "hot", "getchanges"}) {
		t.Errorf("scenarios %q", cfg.scenarios)
	}
	if l := cfg.layoutOf("hot"); l != (layout{users: 1, devicesPerUser: 3, workers: 15}) {
		t.Errorf("hot layout %+v", l)
	}
	if l := cfg.layoutOf("sequential"); l != (layout{users: 1, devicesPerUser: 1, workers: 1}) {
		t.Errorf("sequential layout %+v", l)
	}
	// The first bench's command line: --users 4 --concurrency 16.
	cfg, err = parse("--users", "4", "--concurrency", "16")
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.layoutOf("spread"); l != (layout{users: 4, devicesPerUser: 1, workers: 16}) {
		t.Errorf("--users 4 --concurrency 16: layout %+v", l)
	}
	// notify's pace: --rate, or spread's throughput measured before it.
	for _, args := range [][]string{{"--scenario", "spread,notify"}, {"--scenario", "notify", "--rate", "50"}} {
		if _, err := parse(args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	cfg, err = parse("--duration", "3s")
	if err != nil || cfg.duration != 3*time.Second || cfg.commits != 0 {
		t.Errorf("--duration 3s: %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--scenario", ","},
		{"--commits", "10", "--duration", "1s"},
		{"--commits", "0"},
		{"--duration", "-1s"},
		{"--users", "4", "--workspaces", "3"},
		{"--workspaces", "0"},
		{"--devices", "0"},
		{"--in-flight", "0"},
		{"--concurrency", "-1"},
		{"--commit-items", "10001"},
		{"--commit-items", "0"},
		{"--fill-batch", "10001"},
		{"--items", "0"},
		{"--reads", "0"},
		{"--plot", "out.svg"},
		{"--scenario", "notify"},
		{"--scenario", "notify,spread"},
		{"--scenario", "notify", "--rate", "-1"},
		{"--metrics-url", "127.0.0.1:9464/metrics"},
	} {
		if _, err := parse(args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// The process metrics are read from the text format: unlabelled samples only, comments
// skipped; CPU per operation is the difference over the operations.
func TestParseServerSample(t *testing.T) {
	text := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_total_other 99
syncd_requests_total{method="commit",code="ok"} 5
process_resident_memory_bytes 1.2345e+08
`
	s, err := parseServerSample(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if !s.cpuOK || s.cpuSeconds != 12.5 || !s.rssOK || s.rssBytes != 123450000 {
		t.Errorf("sample %+v", s)
	}
	after := s
	after.cpuSeconds = 13.8
	if v := cpuPerOp(s, after, 2000); v == nil || *v != 0.65 {
		t.Errorf("cpu per op %v, want 0.65 ms", v)
	}
	if v := cpuPerOp(serverSample{}, after, 2000); v != nil {
		t.Errorf("cpu per op without a first sample: %v", *v)
	}
	if r := rssOf(s); r == nil || *r != 123450000 {
		t.Errorf("rss %v", r)
	}
	none, err := parseServerSample(strings.NewReader("go_goroutines 7\n"))
	if err != nil || none.cpuOK || none.rssOK || rssOf(none) != nil {
		t.Errorf("no process metrics: %+v, %v", none, err)
	}
}

// drive with --commits makes exactly that many calls over all workers, each sequence
// number once, and counts failures apart; with --duration it stops by itself.
func TestDrive(t *testing.T) {
	var mu sync.Mutex
	seen := map[int64]int{}
	workers := map[int]bool{}
	r := drive(context.Background(), 4, stopRule{ops: 103}, func(_ context.Context, w int, seq int64) error {
		mu.Lock()
		defer mu.Unlock()
		seen[seq]++
		workers[w] = true
		if seq%10 == 0 {
			return errors.New("refused")
		}
		return nil
	})
	if len(seen) != 103 || r.failed != 11 || len(r.latencies) != 92 || r.firstErr == nil {
		t.Errorf("calls %d, failed %d, timed %d, first error %v", len(seen), r.failed, len(r.latencies), r.firstErr)
	}
	for seq, n := range seen {
		if n != 1 || seq < 0 || seq >= 103 {
			t.Errorf("seq %d called %d times", seq, n)
		}
	}
	for w := range workers {
		if w < 0 || w >= 4 {
			t.Errorf("worker %d", w)
		}
	}
	r = drive(context.Background(), 2, stopRule{duration: 20 * time.Millisecond}, func(context.Context, int, int64) error { return nil })
	if len(r.latencies) == 0 || r.failed != 0 {
		t.Errorf("duration run: %d calls, %d failed", len(r.latencies), r.failed)
	}
	// A cancelled run stops, and what the cancellation broke is not a failure.
	ctx, cancel := context.WithCancel(context.Background())
	r = drive(ctx, 2, stopRule{ops: 1 << 40}, func(ctx context.Context, _ int, seq int64) error {
		if seq == 50 {
			cancel()
		}
		return ctx.Err()
	})
	if r.failed != 0 {
		t.Errorf("cancelled run: %d failures", r.failed)
	}
}

// Every new file of a run has its own temporary id and name.
func TestNewFilesAreDistinct(t *testing.T) {
	temps, names := map[int64]bool{}, map[string]bool{}
	for seq := range int64(3) {
		for _, tag := range []string{"a", "b"} {
			for _, it := range newFiles(tag, seq, 4) {
				if it.TempID == nil || *it.TempID >= 0 || temps[*it.TempID] || names[it.Filename] || it.Version != 1 {
					t.Fatalf("file %+v repeats or is not new", it)
				}
				temps[*it.TempID], names[it.Filename] = true, true
			}
		}
	}
}

// --plot writes a PNG with a row per scenario.
func TestDrawPlot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bench.png")
	s1 := scenarioResult{Name: "sequential", Unit: "commit", Workers: 1, Server: phaseResult{PerSecond: 180, P50Ms: 4.6, P95Ms: 6, P99Ms: 26},
		Floor: &phaseResult{PerSecond: 973, P50Ms: 0.8, P95Ms: 2, P99Ms: 4.3}, Insert: &phaseResult{PerSecond: 4000, P50Ms: 0.2, P95Ms: 0.3, P99Ms: 0.4}}
	s2 := scenarioResult{Name: "getchanges", Unit: "getChanges", Workers: 1, Server: phaseResult{PerSecond: 7, P50Ms: 148, P95Ms: 150, P99Ms: 160}}
	s3 := scenarioResult{Name: "hot", Unit: "commit", Workers: 8, Error: "every commit failed"} // nothing measured
	if err := drawPlot(file, benchReport{Scenarios: []scenarioResult{s1, s2, s3}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy()*11 < b.Dx()*3*3 { // 11 inches wide, 3.4 per row
		t.Errorf("image %v: want three rows of panels", b)
	}
	if err := drawPlot(file, benchReport{}); err == nil {
		t.Error("a plot of no scenario was drawn")
	}
}
