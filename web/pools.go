package web

import (
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

type poolsData struct {
	Pools []poolView
}

// poolView is a pool with its nodes as a page shows them.
type poolView struct {
	*api.PoolDetail
	Nodes  []nodeView
	Events []*dspool.PoolEvent
}

type nodeView struct {
	*dspool.Node
	// Idle says when an idle node of an autoscaled pool goes ("": it
	// stays).
	Idle string
	// Jobs are the running jobs on the node that the user may see (their
	// own; an admin's: everyone's), Sessions the SSH sessions and Jupyter
	// servers likewise.
	Jobs     []*dspool.Job
	Sessions []*dspool.Session
}

// work is what runs that the user may see, by pool.
type work struct {
	jobs     map[string][]*dspool.Job
	sessions map[string][]*dspool.Session
}

func (d *Dashboard) pools(v *visit) (string, any, error) {
	pools, err := v.api.Pools(v.r.Context())
	if err != nil {
		return "", nil, err
	}
	running, err := d.running(v, "")
	if err != nil {
		return "", nil, err
	}
	var data poolsData
	for _, p := range pools {
		data.Pools = append(data.Pools, d.poolView(p, running))
	}
	return "Pools and nodes", data, nil
}

func (d *Dashboard) pool(v *visit) (string, any, error) {
	name := v.r.PathValue("name")
	p, err := v.api.Pool(v.r.Context(), name)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return "", nil, dspool.Errorf(dspool.ENotFound, "there is no pool %s: the pools are listed on the Pools page", name)
	}
	if err != nil {
		return "", nil, err
	}
	running, err := d.running(v, name)
	if err != nil {
		return "", nil, err
	}
	pv := d.poolView(p, running)
	events, err := v.api.PoolEventPage(v.r.Context(), name, api.EventQuery{Limit: 200})
	if err != nil {
		return "", nil, err
	}
	pv.Events = events.Events
	for i, j := 0, len(pv.Events)-1; i < j; i, j = i+1, j-1 { // newest first
		pv.Events[i], pv.Events[j] = pv.Events[j], pv.Events[i]
	}
	return "Pool " + name, pv, nil
}

// running returns the running jobs and live sessions the user may see, of
// pool ("": all).
func (d *Dashboard) running(v *visit, pool string) (work, error) {
	w := work{jobs: map[string][]*dspool.Job{}, sessions: map[string][]*dspool.Session{}}
	l, err := v.api.Jobs(v.r.Context(), api.JobQuery{States: []string{string(dspool.JobRunning)}, Pool: pool, AllUsers: v.user.Admin, Limit: 1000, Tasks: true})
	if err != nil {
		return w, err
	}
	for _, j := range l.Jobs {
		w.jobs[j.Pool] = append(w.jobs[j.Pool], j)
	}
	ss, err := v.api.Sessions(v.r.Context(), v.user.Admin, false)
	if err != nil {
		return w, err
	}
	for _, s := range ss {
		if pool == "" || s.Pool == pool {
			w.sessions[s.Pool] = append(w.sessions[s.Pool], s)
		}
	}
	return w, nil
}

func (d *Dashboard) poolView(p *api.PoolDetail, running work) poolView {
	pv := poolView{PoolDetail: p}
	ready := 0
	for _, n := range p.Nodes {
		if n.State == dspool.NodeReady {
			ready++
		}
	}
	for _, n := range p.Nodes {
		nv := nodeView{Node: n, Idle: idleCountdown(p.Pool, n, ready, d.o.Now())}
		for _, j := range running.jobs[p.Name] {
			if j.Node == n.ID || j.Node == n.Name {
				nv.Jobs = append(nv.Jobs, j)
			}
		}
		for _, s := range running.sessions[p.Name] {
			if s.Node == n.ID {
				nv.Sessions = append(nv.Sessions, s)
			}
		}
		pv.Nodes = append(pv.Nodes, nv)
	}
	return pv
}

// idleCountdown says when an idle node of an autoscaled pool is removed:
// after the pool's idle timeout, unless the pool is at its minimum.
func idleCountdown(p *dspool.Pool, n *dspool.Node, ready int, now time.Time) string {
	if p.Autoscale == nil || n.IdleSince == nil || n.State != dspool.NodeReady {
		return ""
	}
	timeout := time.Duration(p.Autoscale.IdleTimeout)
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	idle := now.Sub(*n.IdleSince).Round(time.Second)
	if ready <= p.Autoscale.Min {
		return fmt.Sprintf("idle for %s; stays: the pool keeps at least %s", idle, dspool.Plural(p.Autoscale.Min, "node"))
	}
	left := n.IdleSince.Add(timeout).Sub(now).Round(time.Second)
	if left <= 0 {
		return "idle for " + idle.String() + ": being removed"
	}
	return "idle for " + idle.String() + ": removed in " + left.String() + " unless work arrives"
}
