package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// metricStages is syncd's stage histogram (syncd -commit-stages): per method and stage,
// the time from the previous stage a request reached to this one.
const metricStages = "syncd_request_stage_seconds"

// stageOrder is the order of the stages on the commit path (internal/stages).
var stageOrder = []string{"started", "parsed", "queued", "taken", "decided", "writing", "sent", "committed", "published", "answered", "done"}

// stageHist is one stage's histogram of commits as scraped: cumulative counts by upper
// bound (seconds, +Inf last), the sum of the observations and their count.
type stageHist struct {
	le     []float64
	counts []float64
	sum    float64
	count  float64
}

// parseStageLine reads one line of the stage histogram of commits into hs (keyed by
// stage); any other line is ignored.
func parseStageLine(hs map[string]*stageHist, name string, value float64) {
	base, labels, ok := strings.Cut(name, "{")
	if !ok || !strings.HasPrefix(base, metricStages) {
		return
	}
	lab := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			lab[k] = strings.Trim(v, `"`)
		}
	}
	if lab["method"] != "commit" || lab["stage"] == "" {
		return
	}
	h := hs[lab["stage"]]
	if h == nil {
		h = &stageHist{}
		hs[lab["stage"]] = h
	}
	switch strings.TrimPrefix(base, metricStages) {
	case "_bucket":
		le, err := strconv.ParseFloat(lab["le"], 64)
		if err != nil {
			return
		}
		h.le, h.counts = append(h.le, le), append(h.counts, value)
	case "_sum":
		h.sum = value
	case "_count":
		h.count = value
	}
}

// stageFigure is what the commits of one scenario spent in one stage (from the
// previous stage they reached): the mean and the p50 and p99 as the upper bound of the
// histogram bucket that holds them.
type stageFigure struct {
	Stage  string  `json:"stage"`
	Count  int64   `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// stagesBetween returns the stage figures of the commits observed between two
// samples, in stage order; nil when the server does not time stages.
func stagesBetween(before, after serverSample) []stageFigure {
	var out []stageFigure
	for _, st := range stageOrder {
		a := after.stages[st]
		if a == nil {
			continue
		}
		b := before.stages[st]
		if b == nil {
			b = &stageHist{}
		}
		n := a.count - b.count
		if n <= 0 {
			continue
		}
		out = append(out, stageFigure{Stage: st, Count: int64(n), MeanMs: round3((a.sum - b.sum) / n * 1000),
			P50Ms: round3(a.quantileSince(b, 0.5) * 1000), P99Ms: round3(a.quantileSince(b, 0.99) * 1000)})
	}
	return out
}

// quantileSince is the upper bound of the bucket holding the q-quantile of the
// observations made since before (+Inf counts as the largest finite bound).
func (h *stageHist) quantileSince(before *stageHist, q float64) float64 {
	type bucket struct{ le, n float64 }
	bs := make([]bucket, len(h.le))
	for i := range h.le {
		bs[i] = bucket{h.le[i], h.counts[i]}
		for j := range before.le {
			if before.le[j] == h.le[i] {
				bs[i].n -= before.counts[j]
			}
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 {
		return 0
	}
	total := bs[len(bs)-1].n
	lastFinite := 0.0
	for _, b := range bs {
		if !math.IsInf(b.le, 1) {
			lastFinite = b.le
		}
		if b.n >= q*total {
			if math.IsInf(b.le, 1) {
				return lastFinite
			}
			return b.le
		}
	}
	return lastFinite
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// printStages writes a scenario's stage figures, one line.
func printStages(w io.Writer, fs []stageFigure) {
	if len(fs) == 0 {
		return
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s %.3f/%.2f/%.2f", f.Stage, f.MeanMs, f.P50Ms, f.P99Ms)
	}
	fmt.Fprintf(w, "  server stages of a commit, ms mean/p50/p99 (p: bucket bound): %s\n", strings.Join(parts, ", "))
}
