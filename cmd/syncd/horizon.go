package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// horizonQuery reads what holds the PostgreSQL store's global order back. An append
// shows in the global order only once every write transaction older than it, in the
// whole PostgreSQL cluster, has ended (the pg_snapshot_xmin horizon, docs/operations.md
// "Failures"): xids counts the transaction ids assigned since the oldest one still
// running (0 when none runs), age is how long the oldest transaction holding an id has
// been open. pg_stat_activity shows other roles' sessions only to superusers and members
// of pg_read_all_stats; without that privilege age covers this role's sessions only.
const horizonQuery = `
SELECT (pg_snapshot_xmax(s)::text::bigint - pg_snapshot_xmin(s)::text::bigint),
       coalesce((SELECT extract(epoch FROM clock_timestamp() - min(xact_start))
                   FROM pg_stat_activity WHERE backend_xid IS NOT NULL), 0)::float8
  FROM pg_current_snapshot() AS s`

// horizonTimeout bounds one scrape's query.
const horizonTimeout = time.Second

// horizonCollector exports syncd_store_horizon_xids and
// syncd_store_oldest_write_transaction_seconds, read at scrape time. A failed read
// exports nothing (the scrape's other metrics still go out).
func horizonCollector(pool *pgxpool.Pool) prometheus.Collector {
	xids := prometheus.NewDesc("syncd_store_horizon_xids",
		"Transaction ids assigned in the PostgreSQL cluster since the oldest write transaction still running: the global order of the store (and every follower) waits for that transaction.", nil, nil)
	age := prometheus.NewDesc("syncd_store_oldest_write_transaction_seconds",
		"Age of the oldest write transaction in the PostgreSQL cluster (as visible to syncd's role); a long one holds back every projector, the notifier and the binder.", nil, nil)
	return multiCollector{descs: []*prometheus.Desc{xids, age}, collect: func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), horizonTimeout)
		defer cancel()
		var n int64
		var secs float64
		if err := pool.QueryRow(ctx, horizonQuery).Scan(&n, &secs); err != nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(xids, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(age, prometheus.GaugeValue, secs)
	}}
}

// multiCollector is a prometheus.Collector of several unlabelled gauges read together
// at scrape time.
type multiCollector struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c multiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c multiCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
