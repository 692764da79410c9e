package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
)

// openReplica opens the read DSN (-pg-read), a hot standby of -pg, and routes the
// service's heavy reads to it (projections.Replica); without -pg-read it does nothing.
func (n *node) openReplica(ctx context.Context) error {
	if n.cfg.pgReadDSN == "" {
		return nil
	}
	pcfg, err := pgxpool.ParseConfig(n.cfg.pgReadDSN)
	if err != nil {
		return fmt.Errorf("parse -pg-read: %w", err)
	}
	if len(pcfg.ConnConfig.Fallbacks) > 0 {
		// The replay position a read waits for is the one of the server it reads.
		return errors.New("-pg-read must name one server (a standby), not several")
	}
	if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "syncd-reads"
	}
	if n.readPool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("open -pg-read: %w", err)
	}
	r, err := projections.NewReplica(projections.ReplicaConfig{Primary: n.pool, Standby: n.readPool,
		MaxWait: n.cfg.pgReadMaxWait, Logger: n.log.With("component", "replica")}, n.queries)
	if err != nil {
		return err
	}
	n.replica = r
	n.log.Info("reads from a standby", "standby", redact(n.cfg.pgReadDSN), "max_wait", n.cfg.pgReadMaxWait)
	served := prometheus.NewDesc("syncd_replica_reads_total",
		"Reads of getChanges, getChangesSince, getItemVersions and getWorkspaces answered, by where: standby (once it replayed the primary's WAL position read after the request arrived), primary (the standby was promoted), fallback (the standby lagged past -pg-read-max-wait or failed).",
		[]string{"where"}, nil)
	n.reg.MustRegister(
		collectorFunc{served, func(ch chan<- prometheus.Metric) {
			st := r.Stats()
			for w := range st.Served {
				ch <- prometheus.MustNewConstMetric(served, prometheus.CounterValue, float64(st.Served[w]), projections.Where(w).String())
			}
		}},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syncd_replica_lag_bytes",
			Help: "WAL bytes the standby had still to replay at the last read routed (0: it had caught up)."},
			func() float64 { return float64(r.Stats().LagBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syncd_replica_wait_seconds_total",
			Help: "Time routed reads spent waiting for the standby to replay up to them."},
			func() float64 { return r.Stats().Waited.Seconds() }),
	)
	return nil
}

// reads is the read model the service answers from: the replica router with -pg-read,
// else the primary's.
func (n *node) reads() service.ReadModel {
	if n.replica != nil {
		return n.replica
	}
	return n.queries
}

// closeReplica waits for the router's position queries, then closes the read pool.
func (n *node) closeReplica() {
	if n.replica != nil {
		n.replica.Close()
	}
	if n.readPool != nil {
		n.readPool.Close()
	}
}

// collectorFunc is a prometheus.Collector of one labelled family read at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
