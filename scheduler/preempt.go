package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// Preemption (docs/decisions/0034-preemption.md). After the walk that
// places and reserves, a job that stays queued may evict preemptible work
// (Node.Running) to make room for itself. Plan only proposes evictions
// (Result.Preemptions); the caller stops the victims, and the job is
// placed by a later plan, once they have ended, as any other job.
//
// A job may preempt when it is not preemptible itself (so preemptible jobs,
// whose scores cross as they age, never evict one another in turn), asks
// for no GPU model or memory (victims' GPUs are counted, not matched), it
// was neither placed nor held by a limit, and it does not hold a
// reservation that starts within the pool's grace (Node.PreemptGrace):
// waiting for that is as quick as an eviction. Jobs try in queue order, at
// most MaxPreemptors a pool per plan.
//
// A victim is a running preemptible attempt of a lower Score than the job
// (never an equal or higher one), that has run for at least the grace (so
// a job evicted and started again gets run time before it can be evicted
// again), and that no job of this plan has chosen already. On each node
// of its pool, open to its user and not reserved for another job, the job
// counts what is free after the walk plus what attempts already being
// evicted there give back (Running.Evicting; once counted, for one job
// only), then takes victims lowest score first (then the one that has run
// least, then the newest) until it fits, and drops again those it turns
// out not to need, highest score first. Of the nodes where it fits so, it
// takes the one with the fewest victims, then the lowest highest victim
// score, then the first by ID. A job that fits with evictions already
// under way gets a Preemption with no victims: it waits for them and
// proposes none.

// MaxPreemptors bounds the jobs of one pool that look for victims in one
// plan, so that a long queue behind a full pool costs no more than a few.
const MaxPreemptors = 16

// Running is a preemptible attempt running on a node.
type Running struct {
	Job    int64
	Score  float64 // as Job.Score, at the moment of the plan
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   int
	// Ran is how long the attempt has run; Evicting, that it is being
	// evicted already: what it holds comes back, and it is no victim.
	Ran      time.Duration
	Evicting bool
}

// Preemption evicts Victims (lowest score first) from Node so that Job can
// start there once they have ended. Victims is empty when evictions
// already under way make the room.
type Preemption struct {
	Job     int64
	Node    string
	Victims []int64
}

func (r Running) shape() shape {
	return shape{cpus: r.CPUs, mem: r.Memory, gpus: r.GPUs}
}

func (s shape) plus(t shape) shape {
	return shape{cpus: s.cpus + t.cpus, mem: s.mem + t.mem, gpus: s.gpus + t.gpus}
}

// evictor is a pool's state for preemption after the walk.
type evictor struct {
	p       *pool
	free    []shape     // by rank: free after the walk, and claimed room taken off
	pending []shape     // by rank: what evictions under way give back, unclaimed
	running [][]Running // by rank: the preemptible attempts not chosen yet (the caller's until changed)
}

// evictor returns p's state for preemption; p runs preemptible work.
func (p *pool) evictor() *evictor {
	v := &evictor{p: p, free: make([]shape, len(p.ids)), pending: make([]shape, len(p.ids)), running: p.preempt}
	for _, es := range p.byGPUs {
		for _, e := range es {
			v.free[e.rank] = shape{cpus: e.cpus, mem: e.mem, gpus: len(p.gpus[e.rank])}
		}
	}
	for _, r := range p.res {
		v.free[r.e.rank] = shape{cpus: r.e.cpus, mem: r.e.mem, gpus: len(p.gpus[r.e.rank])}
	}
	for rank, rs := range v.running {
		if !slices.ContainsFunc(rs, func(r Running) bool { return r.Evicting }) {
			continue
		}
		kept := make([]Running, 0, len(rs))
		for _, r := range rs {
			if r.Evicting {
				v.pending[rank] = v.pending[rank].plus(r.shape())
			} else {
				kept = append(kept, r)
			}
		}
		v.running[rank] = kept
	}
	return v
}

// mayPreempt reports whether j, which stays queued after the walk with
// wait w, may look for victims in p, counting it against MaxPreemptors
// if so.
func (p *pool) mayPreempt(j *Job, w Wait) bool {
	// A job that asks for a GPU model counts GPUs victims hold without
	// their models: it does not preempt (yet), as it does not reserve.
	if p.preempt == nil || j.Preemptible || p.preemptors >= MaxPreemptors || j.GPUs > 0 && !j.GPUWant.Any() {
		return false
	}
	ok := false
	switch w.Kind {
	case WaitResources, WaitReserved:
		ok = true
	case WaitReservation:
		ok = !w.StartKnown || w.Start > p.grace
	}
	if ok {
		p.preemptors++
	}
	return ok
}

// preempt finds the node where j fits with the fewest victims, claims the
// room for j and returns the preemption, if j fits anywhere so.
func (v *evictor) preempt(j *Job) (Preemption, bool) {
	p := v.p
	want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
	reservedFor := map[int32]int64{}
	for _, r := range p.res {
		reservedFor[r.e.rank] = r.job
	}
	best, bestRank := []Running(nil), -1
	var cands []Running
	for rank := range p.ids {
		if p.closed[rank][j.User] {
			continue
		}
		if by, ok := reservedFor[int32(rank)]; ok && by != j.ID {
			continue
		}
		have := v.free[rank].plus(v.pending[rank])
		if have.covers(want) { // no victim: no node does better
			best, bestRank = nil, rank
			break
		}
		cands = cands[:0]
		all := have
		for _, r := range v.running[rank] {
			if r.Score < j.Score && r.Ran >= p.grace {
				cands = append(cands, r)
				all = all.plus(r.shape())
			}
		}
		if !all.covers(want) {
			continue
		}
		victims, ok := choose(have, want, cands)
		if ok && (bestRank < 0 || fewer(victims, best)) {
			best, bestRank = slices.Clone(victims), rank
		}
	}
	if bestRank < 0 {
		return Preemption{}, false
	}
	have := v.free[bestRank].plus(v.pending[bestRank])
	ids := make([]int64, len(best))
	for i, r := range best {
		have = have.plus(r.shape())
		ids[i] = r.Job
	}
	v.free[bestRank], v.pending[bestRank] = have.minus(want), shape{}
	v.running[bestRank] = slices.DeleteFunc(slices.Clone(v.running[bestRank]), func(r Running) bool { return slices.Contains(ids, r.Job) })
	return Preemption{Job: j.ID, Node: p.ids[bestRank], Victims: ids}, true
}

// fewer reports whether victims a beat b: fewer of them, then a lower
// highest score (both are sorted lowest score first).
func fewer(a, b []Running) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return len(a) > 0 && a[len(a)-1].Score < b[len(b)-1].Score
}

// choose returns the victims among cands, lowest score first, whose
// resources added to have cover want, with none that is not needed, and
// whether any do. It sorts cands.
func choose(have, want shape, cands []Running) ([]Running, bool) {
	if have.covers(want) {
		return nil, true
	}
	slices.SortFunc(cands, func(a, b Running) int {
		return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.Ran, b.Ran), cmp.Compare(b.Job, a.Job))
	})
	n := 0
	for n < len(cands) && !have.covers(want) {
		have = have.plus(cands[n].shape())
		n++
	}
	if !have.covers(want) {
		return nil, false
	}
	victims := slices.Clone(cands[:n])
	for i := len(victims) - 1; i >= 0; i-- {
		if less := have.minus(victims[i].shape()); less.covers(want) {
			have = less
			victims = slices.Delete(victims, i, i+1)
		}
	}
	return victims, true
}
