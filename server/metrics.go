package server

import (
	"context"
	"time"

	"github.com/dspool/dspool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	submitted prometheus.Counter
	schedule  prometheus.Histogram
	placed    prometheus.Counter
	// preempted counts evictions; preemption times them from the
	// decision to the placement of the job they made room for.
	preempted  prometheus.Counter
	preemption prometheus.Histogram
	// connects counts agents' connections; hbErrors the heartbeats answered
	// with an error (the connection stays: the agent sends it again).
	connects prometheus.Counter
	hbErrors prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		submitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "dspool_jobs_submitted_total", Help: "Jobs accepted (durable)."}),
		placed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "dspool_jobs_placed_total", Help: "Attempts placed on nodes."}),
		preempted: prometheus.NewCounter(prometheus.CounterOpts{Name: "dspool_jobs_preempted_total", Help: "Attempts evicted for jobs of a higher score."}),
		preemption: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dspool_preemption_seconds", Help: "From the decision to evict to the placement of the job it made room for.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "dspool_agent_connections_total", Help: "Agent connections accepted (a reconnecting fleet shows here)."}),
		hbErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "dspool_heartbeat_errors_total", Help: "Heartbeats answered with an error; the agent keeps its connection and sends again."}),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dspool_scheduling_seconds", Help: "Time of one scheduling pass: snapshot, plan and commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	s.reg.MustRegister(m.submitted, m.placed, m.preempted, m.preemption, m.schedule, m.connects, m.hbErrors, &stateCollector{s: s},
		prometheus.NewGoCollector())
	return m
}

var (
	descJobs     = prometheus.NewDesc("dspool_jobs", "Jobs by state.", []string{"state"}, nil)
	descQueue    = prometheus.NewDesc("dspool_queue_length", "Jobs waiting to be placed.", nil, nil)
	descNodes    = prometheus.NewDesc("dspool_nodes", "Nodes by state.", []string{"state"}, nil)
	descAgents   = prometheus.NewDesc("dspool_agents_connected", "Agents holding a connection now.", nil, nil)
	descSessions = prometheus.NewDesc("dspool_sessions", "Interactive sessions open now.", nil, nil)
)

// stateCollector reads counts from the store at scrape time, so the figures
// are the truth rather than a cache.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJobs
	ch <- descQueue
	ch <- descNodes
	ch <- descAgents
	ch <- descSessions
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if counts, err := c.s.db.CountJobs(ctx); err == nil {
		for _, st := range []dspool.JobState{dspool.JobQueued, dspool.JobRunning, dspool.JobSucceeded, dspool.JobFailed, dspool.JobCancelled} {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(counts[dspool.JobQueued]))
	}
	if nodes, err := c.s.db.Nodes(ctx, "", false); err == nil {
		by := map[dspool.NodeState]int{}
		for _, n := range nodes {
			by[n.State]++
		}
		for _, st := range []dspool.NodeState{dspool.NodeProvisioning, dspool.NodeReady, dspool.NodeDraining, dspool.NodeLost, dspool.NodeFailed} {
			ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(by[st]), string(st))
		}
	}
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(c.s.hub.connected()))
	ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(c.s.sessions.count()))
}
