package server

import (
	"fmt"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

// passLimits is what one autoscaler pass knows of limits. Work that a limit
// holds back never counts as demand: the autoscaler adds no node for work
// that could not run on it. A team's or user's nodes limit caps the demand
// its other waiting work makes, through autoscale.Budgets.
type passLimits struct {
	held    map[int64]bool // queued jobs held by a limit of their team or user
	budgets autoscale.Budgets
	limit   map[string]int // an owner's nodes limit, for messages
	waits   map[int64]limitWait
}

// ownerKey names a team or user in budgets and messages.
func ownerKey(kind, name string) string { return kind + " " + name }

// passLimits works out which queued jobs a limit holds (scheduler.Admit,
// on queued: the queued jobs of active as the scheduler takes them), and
// how many nodes each owner with a nodes limit may still get: its limit
// less the nodes of pools that autoscale that its running jobs and
// sessions are on.
func (s *Server) passLimits(dir *teamDir, pools []*dspool.Pool, active []store.ActiveJob, queued []scheduler.Job, stored []*dspool.Node) *passLimits {
	pl := &passLimits{held: map[int64]bool{}, budgets: autoscale.Budgets{}, limit: map[string]int{}, waits: map[int64]limitWait{}}
	for _, h := range scheduler.Admit(queued, s.quotas(dir, active)) {
		pl.held[h.Job] = true
		pl.waits[h.Job] = limitWait{why: h.Reason, held: true}
	}
	for name, t := range dir.teams {
		if t.Limits.Nodes != nil {
			pl.limit[ownerKey("team", name)] = *t.Limits.Nodes
		}
	}
	for name, l := range dir.users {
		if l.Nodes != nil {
			pl.limit[ownerKey("user", name)] = *l.Nodes
		}
	}
	if len(pl.limit) == 0 {
		return pl
	}
	scaled := map[string]bool{}
	for _, p := range pools {
		if p.Autoscale != nil && s.scaler.scales(p) {
			scaled[p.Name] = true
		}
	}
	onNode := map[string]map[string]bool{} // owner -> nodes its work is on
	on := func(user, team, node string) {
		for _, k := range []string{ownerKey("user", user), ownerKey("team", team)} {
			if _, limited := pl.limit[k]; limited {
				if onNode[k] == nil {
					onNode[k] = map[string]bool{}
				}
				onNode[k][node] = true
			}
		}
	}
	inScaled := map[string]bool{}
	for _, n := range stored {
		if scaled[n.Pool] && n.State != dspool.NodeGone {
			inScaled[n.ID] = true
		}
	}
	for _, j := range active {
		if j.State == dspool.JobRunning && inScaled[j.Node] {
			on(j.User, j.Team, j.Node)
		}
	}
	for _, h := range s.sessions.holds() {
		if inScaled[h.node] {
			on(h.user, h.team, h.node)
		}
	}
	for k, n := range pl.limit {
		pl.budgets[k] = n - len(onNode[k])
	}
	return pl
}

// owners returns the keys of budgets that work of user for team counts
// against.
func (pl *passLimits) owners(user, team string) []string {
	var out []string
	if _, ok := pl.limit[ownerKey("team", team)]; ok && team != "" {
		out = append(out, ownerKey("team", team))
	}
	if _, ok := pl.limit[ownerKey("user", user)]; ok {
		out = append(out, ownerKey("user", user))
	}
	return out
}

// capJobs keeps the queued jobs of p (ids, parallel to waiting) that may
// bring nodes within their owners' budgets, and records why the others
// get none. Only pools that autoscale are capped: the others do not grow.
func (pl *passLimits) capJobs(p *dspool.Pool, ids []int64, waiting []autoscale.Demand) []autoscale.Demand {
	if p.Autoscale == nil || len(pl.budgets) == 0 {
		return waiting
	}
	kept, capped := pl.budgets.Cap(p.Node, waiting)
	for _, c := range capped {
		n := pl.limit[c.Owner]
		pl.waits[ids[c.Index]] = limitWait{why: fmt.Sprintf("%s may have %s for its work, and its running and waiting work needs them all: no node is added for this job",
			c.Owner, dspool.Plural(n, "node"))}
	}
	return kept
}
