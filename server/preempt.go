package server

import (
	"context"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

// preempting is what the scheduling passes have decided about evictions
// (docs/decisions/0034-preemption.md): the queued jobs the last pass found
// room for by evicting preemptible work, which the autoscaler adds no node
// for, and when each was first decided, for the log of how long it took.
type preempting struct {
	mu   sync.Mutex
	jobs map[int64]time.Time
}

// set replaces the jobs that wait for evictions, keeping the decision time
// of those that still do and of those placed now (for placed).
func (p *preempting) set(prs []scheduler.Preemption, plan []scheduler.Placement, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[int64]time.Time, len(prs))
	for _, pl := range plan {
		if at, ok := p.jobs[pl.Job]; ok {
			next[pl.Job] = at
		}
	}
	for _, pr := range prs {
		at, ok := p.jobs[pr.Job]
		if !ok {
			at = now
		}
		next[pr.Job] = at
	}
	p.jobs = next
}

// waits reports whether job id waits for evictions that make its room.
func (p *preempting) waits(id int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.jobs[id]
	return ok
}

// placed forgets job id, which was placed, and returns when its eviction
// was decided, if it waited for one.
func (p *preempting) placed(id int64) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.jobs[id]
	delete(p.jobs, id)
	return at, ok
}

// addPreemptible adds to nodes the preemptible attempts running on them,
// scored as the queue is, and the preemption grace of their pools. Pools
// that do not allow preemption (any more) evict nothing.
func (s *Server) addPreemptible(ctx context.Context, nodes []scheduler.Node, active []store.ActiveJob, st *standing) {
	byID := make(map[string]*scheduler.Node, len(nodes))
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	grace := map[string]time.Duration{}
	for _, j := range active {
		n := byID[j.Node]
		if n == nil || j.State != dspool.JobRunning || !j.Preemptible {
			continue
		}
		g, ok := grace[j.Pool]
		if !ok {
			if p, err := s.hub.pool(ctx, j.Pool); err == nil && p.Preemption != nil {
				g = time.Duration(p.Preemption.Grace)
			}
			grace[j.Pool] = g
		}
		if g == 0 {
			continue
		}
		var ran time.Duration
		if j.StartedAt != nil {
			ran = st.now.Sub(*j.StartedAt)
		}
		n.PreemptGrace = g
		n.Running = append(n.Running, scheduler.Running{Job: j.ID, Score: s.score(j, st), CPUs: j.CPUs, Memory: j.Memory,
			GPUs: len(j.GPUIndices), Ran: ran, Evicting: j.Preempting})
	}
}

// evict carries out the evictions of a plan: each victim is marked as
// being preempted, in the store, then its agent stops it with the
// attempt's preemption grace. A victim that ended or changed meanwhile is
// left alone; the next pass plans again. The evictions under way are sent
// again, which their agents ignore unless the first was lost (a restart
// of the control plane between the store and the push).
func (s *Server) evict(ctx context.Context, res scheduler.Result, active []store.ActiveJob) {
	s.preempts.set(res.Preemptions, res.Placements, s.cfg.Now())
	attempts := make(map[int64]int, len(active))
	for _, j := range active {
		attempts[j.ID] = j.Attempt
		if j.State == dspool.JobRunning && j.Preempting {
			s.hub.stop(j.Node, api.Kill{AttemptRef: api.AttemptRef{Job: j.ID, Attempt: j.Attempt}, Reason: dspool.ReasonPreempted})
		}
	}
	for _, pr := range res.Preemptions {
		for _, v := range pr.Victims {
			j, err := s.db.PreemptJob(ctx, v, attempts[v])
			if err != nil {
				s.log.Info("preempt", "job", v, "for", pr.Job, "err", err)
				continue
			}
			s.log.Info("preempting", "job", v, "attempt", j.Attempt, "node", pr.Node, "for", pr.Job)
			s.metrics.preempted.Inc()
			s.hub.stop(j.Node, api.Kill{AttemptRef: api.AttemptRef{Job: j.ID, Attempt: j.Attempt}, Reason: dspool.ReasonPreempted})
			s.notify(j.ID)
		}
	}
}
