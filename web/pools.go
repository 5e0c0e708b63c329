package web

import (
	"net/http"
	"strconv"
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
	// own; an admin's: everyone's).
	Jobs []*dspool.Job
}

func (d *Dashboard) pools(w http.ResponseWriter, r *http.Request) {
	v := d.login(w, r)
	if v == nil {
		return
	}
	pools, err := v.api.Pools(r.Context())
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	running, err := d.running(v, "")
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	var data poolsData
	for _, p := range pools {
		data.Pools = append(data.Pools, d.poolView(p, running))
	}
	d.render(w, r, http.StatusOK, "pools", v, "Pools and nodes", data)
}

func (d *Dashboard) pool(w http.ResponseWriter, r *http.Request) {
	v := d.login(w, r)
	if v == nil {
		return
	}
	name := r.PathValue("name")
	p, err := v.api.Pool(r.Context(), name)
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	running, err := d.running(v, name)
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	pv := d.poolView(p, running)
	events, err := v.api.PoolEventPage(r.Context(), name, api.EventQuery{Limit: 200})
	if err != nil {
		d.fail(w, r, v, err)
		return
	}
	pv.Events = events.Events
	for i, j := 0, len(pv.Events)-1; i < j; i, j = i+1, j-1 { // newest first
		pv.Events[i], pv.Events[j] = pv.Events[j], pv.Events[i]
	}
	d.render(w, r, http.StatusOK, "pool", v, "Pool "+name, pv)
}

// running returns the running jobs the user may see, of pool ("": all).
func (d *Dashboard) running(v *visit, pool string) (map[string][]*dspool.Job, error) {
	l, err := v.api.Jobs(v.r.Context(), api.JobQuery{States: []string{string(dspool.JobRunning)}, Pool: pool, AllUsers: v.user.Admin, Limit: 1000, Tasks: true})
	if err != nil {
		return nil, err
	}
	out := map[string][]*dspool.Job{}
	for _, j := range l.Jobs {
		out[j.Pool] = append(out[j.Pool], j)
	}
	return out, nil
}

func (d *Dashboard) poolView(p *api.PoolDetail, running map[string][]*dspool.Job) poolView {
	pv := poolView{PoolDetail: p}
	ready := 0
	for _, n := range p.Nodes {
		if n.State == dspool.NodeReady {
			ready++
		}
	}
	for _, n := range p.Nodes {
		nv := nodeView{Node: n, Idle: idleCountdown(p.Pool, n, ready, d.o.Now())}
		for _, j := range running[p.Name] {
			if j.Node == n.ID || j.Node == n.Name {
				nv.Jobs = append(nv.Jobs, j)
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
		return "idle for " + idle.String() + "; stays: the pool keeps at least " + strconv.Itoa(p.Autoscale.Min) + " nodes"
	}
	left := n.IdleSince.Add(timeout).Sub(now).Round(time.Second)
	if left <= 0 {
		return "idle for " + idle.String() + ": being removed"
	}
	return "idle for " + idle.String() + ": removed in " + left.String() + " unless work arrives"
}
