package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Process metrics of syncd's /metrics (Prometheus' process collector) that bench reads.
const (
	metricCPUSeconds = "process_cpu_seconds_total"
	metricRSSBytes   = "process_resident_memory_bytes"
)

// serverSample is what one scrape of syncd's /metrics gave; ok is false without
// --metrics-url or when the metric was missing.
type serverSample struct {
	cpuSeconds float64
	cpuOK      bool
	rssBytes   float64
	rssOK      bool
	stages     map[string]*stageHist // syncd -commit-stages: the commits' stage histograms
	procs      procSample            // --local-cpu: the machine's processes
}

// scrapeServer reads syncd's process metrics; without a URL it returns a zero sample.
func scrapeServer(ctx context.Context, metricsURL string) (serverSample, error) {
	if metricsURL == "" {
		return serverSample{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return serverSample{}, fmt.Errorf("--metrics-url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("scrape %s: %s", metricsURL, resp.Status)
	}
	return parseServerSample(resp.Body)
}

// parseServerSample finds the unlabelled process metrics and the commits' stage
// histograms in the Prometheus text format.
func parseServerSample(r io.Reader) (serverSample, error) {
	s := serverSample{stages: map[string]*stageHist{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case metricCPUSeconds:
			v, err := strconv.ParseFloat(f[1], 64)
			s.cpuSeconds, s.cpuOK = v, err == nil
		case metricRSSBytes:
			v, err := strconv.ParseFloat(f[1], 64)
			s.rssBytes, s.rssOK = v, err == nil
		default:
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				parseStageLine(s.stages, f[0], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read metrics: %w", err)
	}
	return s, nil
}

// cpuPerOp is the server's CPU milliseconds per operation between two samples, nil when
// either lacks the metric or nothing was done.
func cpuPerOp(before, after serverSample, ops int) *float64 {
	if !before.cpuOK || !after.cpuOK || ops == 0 {
		return nil
	}
	v := (after.cpuSeconds - before.cpuSeconds) * 1000 / float64(ops)
	v = float64(int64(v*1000+0.5)) / 1000
	return &v
}

// rssOf is the sample's resident memory, nil without it.
func rssOf(s serverSample) *int64 {
	if !s.rssOK {
		return nil
	}
	v := int64(s.rssBytes)
	return &v
}

// sample scrapes syncd's /metrics (--metrics-url) and reads the machine's processes
// (--local-cpu), each only when asked for.
func (e *benchEnv) sample(ctx context.Context) (serverSample, error) {
	s, err := scrapeServer(ctx, e.cfg.metricsURL)
	if err != nil || !e.cfg.localCPU {
		return s, err
	}
	s.procs, err = sampleProcs("/proc", os.Getpid())
	return s, err
}
