package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stacksync-es/syncservice/internal/follow"
)

// reader is the global order as one of this process's followers (projectors, notifier,
// binder) reads it: one follow.Tail they share, so that followers at or near the same
// position read the store once between them, through a Reader of its own (each call
// hands out one), so the tail drops what every follower is past; nil (each reads the
// store itself) with -follow-tail-bytes 0.
func (n *node) reader() follow.Reader {
	if n.cfg.followTailBytes <= 0 {
		return nil
	}
	if n.tail == nil {
		tc := follow.DefaultTailConfig()
		tc.Store, tc.MaxBytes = n.store, int64(n.cfg.followTailBytes)
		// Pace empty reads only as much as the least patient follower of the tail lingers.
		tc.EmptyGap = n.followerLinger(n.cfg.inline && n.cfg.directPublish)
		t, err := follow.NewTail(tc)
		if err != nil {
			panic(err) // the config is checked: only a programming error gets here
		}
		n.tail = t
		watchTail(n.reg, t)
	}
	return n.tail.Follower()
}

// addFollower registers a follower of the global order: run by serve, woken after each
// append of this process, and on /readyz, which is not ready while the follower is stuck
// (no progress with events pending; it names itself, its checkpoint and the last error;
// events it set aside do not count).
func (n *node) addFollower(run func(context.Context) error, healthy func() error, wake func()) {
	n.ready = append(n.ready, func(context.Context) error { return healthy() })
	n.wake = append(n.wake, wake)
	n.followers = append(n.followers, run)
}

// watchTail exports the shared reader's counters.
func watchTail(reg *prometheus.Registry, t *follow.Tail) {
	reads := func(kind string, v func(follow.TailStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_follow_reads_total",
			Help: "Reads of the global order by the followers: served from the shared tail (memory), by a store read " +
				"another follower started (joined); store reads at its end (shared; shared_empty: of those, the ones " +
				"that found nothing new) and of a follower behind it (own).",
			ConstLabels: prometheus.Labels{"source": kind}}, func() float64 { return float64(v(t.Stats())) })
	}
	reg.MustRegister(
		reads("memory", func(s follow.TailStats) uint64 { return s.Hits }),
		reads("joined", func(s follow.TailStats) uint64 { return s.Joined }),
		reads("shared", func(s follow.TailStats) uint64 { return s.Shared }),
		reads("shared_empty", func(s follow.TailStats) uint64 { return s.Empty }),
		reads("own", func(s follow.TailStats) uint64 { return s.Own }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_follow_tail_bytes",
			Help: "Event data the followers' shared tail holds (bounded by -follow-tail-bytes; what every follower is past is dropped)."},
			func() float64 { return float64(t.Stats().Bytes) }),
	)
}
