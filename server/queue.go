package server

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/scheduler"
	"github.com/dspool/dspool/store"
)

// queue answers GET /api/v1/queue[?pool=P]: every queued job, of every
// user, in the order the scheduler takes them, with the factors of its
// score, why it waits and when it may start, from a plan made for the
// answer (nothing is placed). Other users' names and job names are left
// out where their pool hides them, except for admins.
func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pool := r.URL.Query().Get("pool")
	if pool != "" {
		if _, err := s.db.Pool(ctx, pool); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	in, err := s.queueInputs(ctx, pool)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	queued := s.queued(in.active, in.st)
	res := scheduler.Schedule(in.nodes, queued, s.quotas(in.dir, in.active), true)
	byID := make(map[int64]*dspool.Job, len(in.listed))
	for _, j := range in.listed {
		byID[j.ID] = j
	}
	waits := make(map[int64]scheduler.Wait, len(res.Waits))
	for _, w := range res.Waits {
		waits[w.Job] = w
	}
	for _, p := range res.Placements {
		waits[p.Job] = scheduler.Wait{Job: p.Job, Kind: waitStarting}
	}
	now := in.st.now
	starts := scheduler.Estimate(in.nodes, queued, estimateFirst)
	out := dspool.Queue{At: now.UTC(), Jobs: []dspool.QueueEntry{}}
	position := map[string]int{}
	for _, i := range scheduler.Order(queued) {
		q := &queued[i]
		j := byID[q.ID]
		if j == nil { // another pool's, or it changed since
			continue
		}
		delete(byID, q.ID)
		position[q.Pool]++
		e := queueEntry(j, q, in.st)
		e.Position = position[q.Pool]
		w := waits[q.ID]
		s.explainQueued(&e, w, in.nodes, q, cmp.Or(in.names[w.Node], w.Node), now)
		explainPreempted(&e, j)
		if st, ok := starts[q.ID]; ok && st.Known && e.EstimatedStart == nil {
			e.EstimatedStart = at(now, st.At)
		}
		out.Jobs = append(out.Jobs, e)
	}
	// What may not run yet: held by its user, waiting for other jobs, or
	// an array's task parked by its cap.
	rest := slices.SortedFunc(maps.Values(byID), func(a, b *dspool.Job) int { return cmp.Compare(a.ID, b.ID) })
	for _, j := range rest {
		e := queueEntry(j, nil, in.st)
		e.Reason, e.Detail = dspool.WaitHeld, cmp.Or(waitingFor(j), "an array's task: it waits for a place under the array's cap of tasks running at once")
		out.Jobs = append(out.Jobs, e)
	}
	caller := userFrom(r)
	for i := range out.Jobs {
		if e := &out.Jobs[i]; in.hidden[e.Pool] && !caller.Admin && e.User != caller.Name {
			e.User, e.Name = "", ""
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// estimateFirst is how many jobs of each pool's queue get an estimated
// start: planning each costs a walk of the pool's nodes.
const estimateFirst = 200

// at is now plus d, to the second, as the queue shows times.
func at(now time.Time, d time.Duration) *time.Time {
	t := now.Add(d).UTC().Truncate(time.Second)
	return &t
}

// waitStarting is the wait of a job the plan made for an answer places:
// the next pass will.
const waitStarting scheduler.WaitKind = "starting"

// queueView is what an answer about the queue is made from.
type queueView struct {
	active []store.ActiveJob
	nodes  []scheduler.Node
	dir    *teamDir
	st     *standing
	listed []*dspool.Job     // the queued jobs of the pool asked for (all pools: "")
	names  map[string]string // node names by ID
	hidden map[string]bool   // pools that hide other users' names
}

// queueInputs reads what a pass reads, with the queued jobs of pool in
// full, the nodes' names and the pools' settings of names.
func (s *Server) queueInputs(ctx context.Context, pool string) (*queueView, error) {
	in := &queueView{names: map[string]string{}, hidden: map[string]bool{}}
	s.placeMu.Lock() // the same view of free nodes as a pass
	active, err := s.db.ActiveJobs(ctx)
	if err == nil {
		in.nodes, err = s.snapshotNodes(ctx, active)
	}
	if err == nil {
		_, err = s.closeNodes(ctx, in.nodes)
	}
	s.placeMu.Unlock()
	in.active = active
	if err == nil {
		in.dir, err = s.teamDirectory(ctx)
	}
	if err == nil {
		in.st, err = s.standing(ctx, in.dir, active, s.cfg.Now())
	}
	if err == nil {
		in.listed, err = s.db.ListJobs(ctx, store.JobFilter{States: []dspool.JobState{dspool.JobQueued}, Pool: pool})
	}
	var pools []*dspool.Pool
	if err == nil {
		pools, err = s.db.Pools(ctx)
	}
	var stored []*dspool.Node
	if err == nil {
		stored, err = s.db.Nodes(ctx, pool, false)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range stored {
		in.names[n.ID] = n.Name
	}
	s.addPreemptible(ctx, in.nodes, active, in.st)
	for _, p := range pools {
		in.hidden[p.Name] = p.QueueNames == dspool.QueueNamesHidden
	}
	return in, nil
}

// queueEntry is j in the queue, with the factors of its score (q: as the
// scheduler takes it; nil for one it does not take yet).
func queueEntry(j *dspool.Job, q *scheduler.Job, st *standing) dspool.QueueEntry {
	e := dspool.QueueEntry{Job: j.Ref(), ID: j.ID, Name: j.Name, User: j.User, Team: j.Team, Pool: j.Pool, CPUs: j.CPUs, Memory: j.Memory,
		GPUs: j.GPUs, TimeLimit: j.TimeLimit, Priority: j.Priority, SubmittedAt: j.SubmittedAt}
	age := st.now.Sub(j.SubmittedAt)
	e.Age = st.cfg.AgeWeight * st.cfg.AgeFactor(age)
	e.FairShare = st.cfg.FairShareWeight * st.Users[fairshare.Key{Team: j.Team, User: j.User}].Factor
	e.Score = float64(e.Priority) + e.FairShare + e.Age
	if q != nil {
		e.Score, e.Reserving = q.Score, q.Reserve
	}
	return e
}

// explainQueued fills e's reason, detail and estimated start from w, what
// the plan made for the answer says of it; node is the name of the node w
// names.
func (s *Server) explainQueued(e *dspool.QueueEntry, w scheduler.Wait, nodes []scheduler.Node, q *scheduler.Job, node string, now time.Time) {
	switch w.Kind {
	case waitStarting:
		e.Reason, e.Detail, e.EstimatedStart = dspool.WaitStarting, "there is room for it: it starts at the next scheduling pass", at(now, 0)
	case scheduler.WaitLimit:
		e.Reason, e.Detail = dspool.WaitLimit, w.Reason
	case scheduler.WaitNoNode:
		e.Reason, e.Detail = dspool.WaitNoNode, cmp.Or(s.scaler.jobWaiting(e.Pool), "pool "+e.Pool+" has no ready node that takes batch work")
	case scheduler.WaitReservation:
		e.Reason, e.ReservedNode = dspool.WaitReservation, w.Node
		if w.StartKnown {
			e.EstimatedStart = at(now, w.Start)
			e.Detail = fmt.Sprintf("it waited long enough to reserve node %s, where it starts by %s, when the work there reaches its time limits", node, e.EstimatedStart.Format(time.RFC3339))
		} else {
			e.Detail = fmt.Sprintf("it waited long enough to reserve node %s, where it starts when work without a time limit there ends", node)
		}
	case scheduler.WaitPreempting:
		e.Reason = dspool.WaitPreempting
		e.Detail = fmt.Sprintf("preemptible work of a lower score on node %s is being evicted for it: it starts there when that work has stopped, within the pool's preemption grace", node)
	case scheduler.WaitReserved:
		e.Reason, e.ReservedNode = dspool.WaitReserved, w.Node
		e.Detail = fmt.Sprintf("the node with room for it, %s, is reserved for job %d, and it would run past that job's start (give it a --time that ends before)", node, w.For)
	default:
		e.Reason, e.Detail = dspool.WaitResources, fmt.Sprintf("no node of pool %s has room for %s, %s and %s now", e.Pool, dspool.Plural(e.CPUs, "cpu"), e.Memory, dspool.Plural(e.GPUs, "gpu"))
		if scheduler.Fits(nodes, *q) {
			e.Reason, e.Detail = dspool.WaitPriority, "jobs ahead of it in the queue took the room there was"
		}
	}
}

// explainPreempted says of a job that waits for room again after an
// eviction that it was preempted, and keeps the room it waits for in the
// detail.
func explainPreempted(e *dspool.QueueEntry, j *dspool.Job) {
	if j.Reason != dspool.ReasonPreempted || e.Reason != dspool.WaitResources && e.Reason != dspool.WaitPriority {
		return
	}
	e.Reason = dspool.WaitPreempted
	e.Detail = fmt.Sprintf("evicted for a job of a higher score (%s so far); it keeps its place by age: %s",
		dspool.Plural(j.Preemptions, "time"), e.Detail)
}

// share answers GET /api/v1/share: each team's and user's share and
// decayed usage. Other users' names are left out for non-admins when a
// pool hides names in its queue.
func (s *Server) share(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.cfg.Now()
	active, err := s.db.ActiveJobs(ctx)
	var dir *teamDir
	if err == nil {
		dir, err = s.teamDirectory(ctx)
	}
	var st *standing
	if err == nil {
		st, err = s.standing(ctx, dir, active, now)
	}
	pools, perr := s.db.Pools(ctx)
	if err = cmp.Or(err, perr); err != nil {
		s.fail(w, r, err)
		return
	}
	caller := userFrom(r)
	hide := !caller.Admin && slices.ContainsFunc(pools, func(p *dspool.Pool) bool { return p.QueueNames == dspool.QueueNamesHidden })
	rep := fairshare.Report(st.now, st.cfg.HalfLife, st.usage, st.Standing, dir.shares())
	for i := range rep.Users {
		if u := &rep.Users[i]; hide && u.Name != caller.Name {
			u.Name = ""
		}
	}
	writeJSON(w, http.StatusOK, rep)
}
