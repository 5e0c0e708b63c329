package server

import (
	"context"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/metrics"
)

type serverMetrics struct {
	submitted *metrics.Counter
	schedule  *metrics.Histogram
	placed    *metrics.Counter
	// preempted counts evictions; preemption times them from the
	// decision to the placement of the job they made room for.
	preempted  *metrics.Counter
	preemption *metrics.Histogram
	// connects counts agents' connections; hbErrors the heartbeats answered
	// with an error (the connection stays: the agent sends it again).
	connects *metrics.Counter
	hbErrors *metrics.Counter
}

func newMetrics(s *Server) *serverMetrics {
	r := s.reg
	m := &serverMetrics{
		submitted: r.Counter("dspool_jobs_submitted_total", "Jobs accepted (durable)."),
		placed:    r.Counter("dspool_jobs_placed_total", "Attempts placed on nodes."),
		preempted: r.Counter("dspool_jobs_preempted_total", "Attempts evicted for jobs of a higher score."),
		preemption: r.Histogram("dspool_preemption_seconds", "From the decision to evict to the placement of the job it made room for.",
			metrics.ExponentialBuckets(0.25, 2, 12)),
		schedule: r.Histogram("dspool_scheduling_seconds", "Time of one scheduling pass: snapshot, plan and commit.",
			metrics.ExponentialBuckets(0.0005, 2, 14)),
		connects: r.Counter("dspool_agent_connections_total", "Agent connections accepted (a reconnecting fleet shows here)."),
		hbErrors: r.Counter("dspool_heartbeat_errors_total", "Heartbeats answered with an error; the agent keeps its connection and sends again."),
	}
	r.Gauges(s.stateGauges)
	r.GoRuntime()
	return m
}

// stateGauges reads counts from the store at scrape time, so the figures
// are the truth rather than a cache.
func (s *Server) stateGauges() []metrics.Family {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var fs []metrics.Family
	if counts, err := s.db.CountJobs(ctx); err == nil {
		jobs := metrics.Family{Name: "dspool_jobs", Help: "Jobs by state.", Label: "state"}
		for _, st := range []dspool.JobState{dspool.JobQueued, dspool.JobRunning, dspool.JobSucceeded, dspool.JobFailed, dspool.JobCancelled} {
			jobs.Samples = append(jobs.Samples, metrics.Sample{LabelValue: string(st), Value: float64(counts[st])})
		}
		fs = append(fs, jobs, gauge("dspool_queue_length", "Jobs waiting to be placed.", float64(counts[dspool.JobQueued])))
	}
	if nodes, err := s.db.Nodes(ctx, "", false); err == nil {
		by := map[dspool.NodeState]int{}
		for _, n := range nodes {
			by[n.State]++
		}
		f := metrics.Family{Name: "dspool_nodes", Help: "Nodes by state.", Label: "state"}
		for _, st := range []dspool.NodeState{dspool.NodeProvisioning, dspool.NodeReady, dspool.NodeDraining, dspool.NodeLost, dspool.NodeFailed} {
			f.Samples = append(f.Samples, metrics.Sample{LabelValue: string(st), Value: float64(by[st])})
		}
		fs = append(fs, f)
	}
	return append(fs,
		gauge("dspool_agents_connected", "Agents holding a connection now.", float64(s.hub.connected())),
		gauge("dspool_sessions", "Interactive sessions open now.", float64(s.sessions.count())))
}

func gauge(name, help string, v float64) metrics.Family {
	return metrics.Family{Name: name, Help: help, Samples: []metrics.Sample{{Value: v}}}
}
