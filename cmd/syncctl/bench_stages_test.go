package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// stageMetrics renders syncd's stage histogram of commits for one stage with the
// given cumulative bucket counts (bounds 1, 2, 4 ms and +Inf), sum and count, plus a
// line of another method that must be ignored.
func stageMetrics(stage string, counts [4]int, sum float64) string {
	les := []string{"0.001", "0.002", "0.004", "+Inf"}
	var b strings.Builder
	b.WriteString("# HELP syncd_request_stage_seconds x\n# TYPE syncd_request_stage_seconds histogram\n")
	for i, le := range les {
		fmt.Fprintf(&b, "syncd_request_stage_seconds_bucket{method=%q,stage=%q,le=%q} %d\n", "commit", stage, le, counts[i])
		fmt.Fprintf(&b, "syncd_request_stage_seconds_bucket{method=%q,stage=%q,le=%q} 1000\n", "getChanges", stage, le)
	}
	fmt.Fprintf(&b, "syncd_request_stage_seconds_sum{method=%q,stage=%q} %g\n", "commit", stage, sum)
	fmt.Fprintf(&b, "syncd_request_stage_seconds_count{method=%q,stage=%q} %d\n", "commit", stage, counts[3])
	b.WriteString("process_cpu_seconds_total 1.5\n")
	return b.String()
}

// The figures of a scenario are those of the commits observed between the two
// scrapes: mean from the sums, p50 and p99 as the bound of the bucket that holds them.
func TestStagesBetweenScrapes(t *testing.T) {
	before, err := parseServerSample(strings.NewReader(stageMetrics("committed", [4]int{10, 10, 10, 10}, 0.005)))
	if err != nil {
		t.Fatal(err)
	}
	// 100 more: none ≤ 1 ms, 60 ≤ 2 ms, 39 ≤ 4 ms, 1 above.
	after, err := parseServerSample(strings.NewReader(stageMetrics("committed", [4]int{10, 70, 109, 110}, 0.305)))
	if err != nil {
		t.Fatal(err)
	}
	if !after.cpuOK || after.cpuSeconds != 1.5 {
		t.Fatalf("process metric lost: %+v", after)
	}
	fs := stagesBetween(before, after)
	if len(fs) != 1 {
		t.Fatalf("figures %+v, want one stage", fs)
	}
	f := fs[0]
	if f.Stage != "committed" || f.Count != 100 || f.MeanMs != 3 || f.P50Ms != 2 || f.P99Ms != 4 {
		t.Fatalf("figures %+v, want committed: 100, mean 3 ms, p50 2 ms, p99 4 ms", f)
	}
	// The slowest percent above the last finite bound reports that bound.
	if got := after.stages["committed"].quantileSince(before.stages["committed"], 1); got != 0.004 {
		t.Fatalf("p100 %v, want the last finite bound 0.004", got)
	}
	var out bytes.Buffer
	printStages(&out, fs)
	if !strings.Contains(out.String(), "committed 3.000/2.00/4.00") {
		t.Fatalf("printed %q", out.String())
	}
	// A server without -commit-stages: no figures, nothing printed.
	none, _ := parseServerSample(strings.NewReader("process_cpu_seconds_total 1\n"))
	if fs := stagesBetween(none, none); fs != nil {
		t.Fatalf("figures without the histogram: %+v", fs)
	}
}
