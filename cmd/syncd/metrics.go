package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/notify"
)

// metrics are syncd's Prometheus collectors.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	commits  *prometheus.CounterVec
	items    *prometheus.CounterVec
	busy     *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_requests_total", Help: "Requests handled, by method and result code (OK or the wire error code).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "syncd_request_duration_seconds", Help: "Time from taking a request to acknowledging it, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_commits_total", Help: "Commit requests decided: recorded (a new event) or replayed (a repeated requestId).",
		}, []string{"result"}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_commit_items_total", Help: "Items of recorded commits by outcome: stored, duplicate, or the failure reason.",
		}, []string{"outcome"}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_requests_busy_total", Help: "Requests the RPC server itself answered Busy, by reason: user_in_flight, in_flight_bytes, read_deadline.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.latency, m.commits, m.items, m.busy)
	return m
}

// Request implements rpc.Metrics.
func (m *metrics) Request(method, code string, d time.Duration) {
	m.requests.WithLabelValues(method, code).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// stageTimer returns what observes the requests' stage timing (rpc.Config.Stages) into
// a histogram it registers: per method and stage, the time from the previous stage the
// request reached to this one (internal/stages lists them).
func (m *metrics) stageTimer() func(method string, t *stages.Trace) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "syncd_request_stage_seconds",
		Help: "With -commit-stages: time from the previous stage a request reached to this one (received, started, parsed, queued, taken, decided, writing, sent, committed, published, answered, done), by method.",
		// 25 µs to 0.4 s.
		Buckets: prometheus.ExponentialBuckets(0.000025, 1.5, 25),
	}, []string{"method", "stage"})
	m.reg.MustRegister(h)
	return func(method string, t *stages.Trace) {
		for _, st := range t.Steps() {
			h.WithLabelValues(method, st.Stage.String()).Observe(st.Took.Seconds())
		}
	}
}

// Busy implements rpc.BusyMetrics.
func (m *metrics) Busy(reason string) { m.busy.WithLabelValues(reason).Inc() }

func (m *metrics) commit(res service.CommitResult) {
	if res.Replayed {
		m.commits.WithLabelValues("replayed").Inc()
		return
	}
	m.commits.WithLabelValues("recorded").Inc()
	for _, o := range res.Event.Items {
		switch {
		case o.Stored:
			m.items.WithLabelValues("stored").Inc()
		case o.Succeeded:
			m.items.WithLabelValues("duplicate").Inc()
		default:
			m.items.WithLabelValues(string(o.Reason)).Inc()
		}
	}
}

// watchProjector exports a projector's position and lag (measured on scrape).
func (m *metrics) watchProjector(p *projections.Projector, store eventstore.Store) {
	model := p.Status().Model
	labels := prometheus.Labels{"model": model}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_projector_active", Help: "1 if this process is the model's active projector.", ConstLabels: labels},
			func() float64 { return b2f(p.Status().Active) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_projector_set_aside_total", Help: "Events this process's projector could not apply and set aside (syncctl projections status lists them).", ConstLabels: labels},
			func() float64 { return float64(p.Status().SetAside) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_projector_events", Help: "Events the read model has processed.", ConstLabels: labels},
			func() float64 { return float64(p.Status().Events) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_projector_lag_events", Help: "Events not yet applied (capped at the scan limit); -1 if unknown.", ConstLabels: labels},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				l, err := p.Lag(ctx)
				if err != nil {
					return -1
				}
				return float64(l.Events)
			}),
	)
}

// watchNotifier exports the notifier's progress.
func (m *metrics) watchNotifier(n *notify.Notifier) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_notifier_leader", Help: "1 if this process is the active notifier."},
			func() float64 { return b2f(n.Status().Leader) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_notifier_published_total", Help: "notifyCommit events confirmed by the broker."},
			func() float64 { return float64(n.Status().Published) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_notifier_failures_total", Help: "Notifier steps that failed and were retried."},
			func() float64 { return float64(n.Status().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_notifier_set_aside_total",
			Help: "Events the notifier gave up on and set aside (syncctl notify status lists them)."},
			func() float64 { return float64(n.Status().Skipped) }),
	)
}

// watchBinder exports the binder's progress.
func (m *metrics) watchBinder(b *notify.Binder) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_binder_leader", Help: "1 if this process is the active binder."},
			func() float64 { return b2f(b.Status().Leader) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_binder_failures_total", Help: "Binder steps that failed and were retried."},
			func() float64 { return float64(b.Status().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_binder_set_aside_total",
			Help: "Events the binder gave up on and set aside (syncctl notify status lists them)."},
			func() float64 { return float64(b.Status().Skipped) }),
	)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// countingService counts commit outcomes on their way to the RPC server.
type countingService struct {
	*service.Service
	m *metrics
}

// Commit implements rpc.Service.
func (c countingService) Commit(ctx context.Context, req protocol.CommitRequest) (service.CommitResult, error) {
	res, err := c.Service.Commit(ctx, req)
	if err == nil {
		c.m.commit(res)
	}
	return res, err
}

// watchDirect exports what the direct publisher did.
func (m *metrics) watchDirect(d *notify.Direct) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_direct_published_total",
			Help: "Commits whose notifyCommit the appending process published itself (the notifier skips those the broker confirmed)."},
			func() float64 { sent, _ := d.Counts(); return float64(sent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_direct_declined_total",
			Help: "Commits the appending process left to the notifier (out of order, binder behind, broker away)."},
			func() float64 { _, declined := d.Counts(); return float64(declined) }),
	)
}
