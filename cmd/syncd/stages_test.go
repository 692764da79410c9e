package main

import (
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stacksync-es/syncservice/internal/stages"
)

// -commit-stages is off by default (no timer: rpc.Config.Stages stays nil) and
// SYNCD_COMMIT_STAGES turns it on.
func TestCommitStagesConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, c := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"-commit-stages"}, nil, true},
		{nil, map[string]string{"SYNCD_COMMIT_STAGES": "true"}, true},
	} {
		cfg, err := parseConfig(c.args, env(c.env), io.Discard)
		if err != nil || cfg.commitStages != c.want {
			t.Errorf("args %v env %v: commit-stages %v, err %v; want %v", c.args, c.env, cfg.commitStages, err, c.want)
		}
		n := &node{cfg: cfg, m: newMetrics(prometheus.NewRegistry())}
		if got := n.stageTimer() != nil; got != c.want {
			t.Errorf("args %v env %v: stage timer %v, want %v", c.args, c.env, got, c.want)
		}
	}
}

// The stage timer observes each reached stage once, by method and stage.
func TestStageTimerObservesSteps(t *testing.T) {
	reg := prometheus.NewRegistry()
	observe := newMetrics(reg).stageTimer()
	tr := stages.Start()
	tr.Mark(stages.Parsed)
	tr.Mark(stages.Committed)
	tr.Mark(stages.Done)
	observe("commit", tr)
	observe("commit", tr)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "syncd_request_stage_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var method, stage string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					method = l.GetValue()
				case "stage":
					stage = l.GetValue()
				}
			}
			counts[method+"/"+stage] = m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"commit/parsed": 2, "commit/committed": 2, "commit/done": 2}
	if len(counts) != len(want) {
		t.Fatalf("observed %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Fatalf("observed %v, want %v", counts, want)
		}
	}
}
