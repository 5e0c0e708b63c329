// Package scheduler places queued jobs on nodes. It is a pure function: no I/O,
// no clock, no goroutines. Times are durations from the moment of the plan,
// which the caller chooses.
//
// Plan walks the queue once in queue order: jobs that hold a reservation
// right (Job.Reserve) first, then highest Score first, then highest
// Priority, then lowest ID (oldest). The caller computes Score (the server
// combines priority, age and fair share, package fairshare); with every
// Score 0 the order is priority, then age. Each job goes to the best node
// of its own pool that fits it, and what it takes is subtracted from that
// node for the rest of the plan.
//
// Fit: a node fits a job when FreeCPUs >= CPUs, FreeMem >= Memory and
// len(FreeGPUs) >= GPUs. A job that asks for a GPU model or memory
// (Job.GPUWant) counts only the free GPUs that Node.GPUs describes as fitting
// it (dspool.GPUWant.Fits), and holds the lowest of those; such a job finds
// its node by a linear walk of its pool in the order of the score rules, and
// its shape is not remembered as one that fits nowhere (another model may be
// free where this one is not). Backfill and reservations count GPUs, not
// their models: such a job neither backfills nor reserves.
//
// Score: among the nodes that fit, the job takes the first by, in order:
//
//  1. fewest free GPUs;
//  2. fewest free cpus;
//  3. least free memory;
//  4. node ID, in string order.
//
// "Free" is what is free at that point of the plan, before this job. The job
// holds the lowest free GPU indices of the node it gets.
//
// Rule 1 keeps GPUs together: a GPU job goes to the node with the fewest GPUs
// left that still has enough, and a job that needs no GPU goes first to a
// node with no free GPU (a cpu-only node, or a GPU node whose GPUs are all
// held), so the cpus and memory next to free GPUs stay for jobs that need
// those GPUs. Rules 2 and 3 are best fit: the most used node that fits is
// filled first, so empty nodes are chosen last and stay empty for the
// autoscaler to remove. Amounts are absolute, not fractions of capacity: the
// nodes of a pool are all the same size, so the two orders agree; Node.CPUs
// and Node.Memory are carried for callers and not read here. Rule 4 makes the
// plan deterministic: the same nodes and jobs, in any order, give the same
// plan, provided node IDs and job IDs are unique.
//
// Closed nodes: a node may be closed to some users (Node.Closed: the
// machine has an account that holds their uid). A job of such a user takes
// the best node by the same rules among those open to it, found by a
// linear walk of its pool; a job that fits only closed nodes stays queued,
// and its shape is not remembered as one that fits nowhere.
//
// Backfill and reservations: a job that fits no node is skipped, not waited
// for, and later jobs, even of lower priority, may still be placed if they
// fit. A skipped job that has waited long enough (the caller sets
// Job.Reserve) reserves the node of its pool, open to its user, where it
// can start soonest: the node's free resources plus what its running work
// releases by its time limits (Node.Releases, and the jobs of this plan
// that have a time limit) must cover the job. That moment is the
// reservation's start; it is unknown when the node needs work without a
// time limit to end. A reserved node leaves the pool's index: later jobs
// go to the other nodes first, and to a reserved node only when nothing
// else fits and either they end before its start (Job.TimeLimit <= start,
// never when the start is unknown) or they fit in what the node has to
// spare at the start beyond the reservation. So backfill never delays a
// reservation that the time limits promise. A pool holds at most
// MaxReservations at once; a reserving job past that waits as any other.
// Schedule reports the reservations and why each job waits; Estimate says
// when queued jobs should start, planning each in queue order on the
// nodes' timelines as Slurm's backfill does. A job asking for a negative
// amount of anything is never placed.
//
// Limits: PlanWithin is Plan under the limits of users and teams (Quotas:
// each one's limits and what its running work holds now). In the same walk,
// before a job looks for a node, it is checked against the limits of its
// team and of its user, counting what they hold now plus the jobs placed
// earlier in the plan; one that would take either over a limit in cpus,
// memory or GPUs is skipped and reported as Held, with the reason, and does
// not count as a shape that found no node (nor reserves anything). Plan is
// PlanWithin with no limits. Admit walks the queue in the same order
// without nodes, charging each job it lets through as though it ran: what
// it holds back is work no new node should be added for, and its reasons
// are what queued jobs show.
//
// Preemption: Schedule also proposes evictions of preemptible work
// (Node.Running) for jobs that stay queued (Result.Preemptions); it never
// carries them out. preempt.go says who may evict whom.
package scheduler

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/dspool/dspool"
)

// Node is a ready node that can take batch work, with what is free on it now.
type Node struct {
	ID       string
	Pool     string
	CPUs     dspool.MilliCPU // capacity
	Memory   dspool.Bytes    // capacity
	FreeCPUs dspool.MilliCPU
	FreeMem  dspool.Bytes
	FreeGPUs []int // indices of GPUs not held by any attempt, ascending
	// GPUs describes the node's GPUs (their model and memory), for jobs
	// with a GPUWant; nil: none described, and no such job fits.
	GPUs []dspool.GPU
	// Closed holds the users whose jobs may not run here (nil: none).
	Closed map[string]bool
	// Releases is what the node's running work gives back when it reaches
	// its time limit; work without a time limit is not listed.
	Releases []Release
	// Running is the preemptible work running on the node, and
	// PreemptGrace its pool's grace (Pool.Preemption): see Preemption.
	Running      []Running
	PreemptGrace time.Duration
}

// Release is what running work gives back After from now, at its time limit.
type Release struct {
	After  time.Duration
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   int
}

// Job is a queued job.
type Job struct {
	ID       int64 // submission order: lower is older
	Pool     string
	Priority int // higher first
	CPUs     dspool.MilliCPU
	Memory   dspool.Bytes
	GPUs     int
	// GPUWant is what the job asks of each GPU; the zero value takes any.
	GPUWant dspool.GPUWant
	// User and Team are whose limits the job counts against in
	// PlanWithin and Admit ("" Team: none).
	User, Team string
	// Array is the array the job is a task of (0: none), whose cap in
	// Quotas.Arrays it counts against.
	Array int64
	// Score orders the queue before Priority: higher first.
	Score float64
	// Reserve: the job has waited long enough to go first and, when it
	// fits nowhere, to reserve a node.
	Reserve bool
	// TimeLimit is how long the job may run (0: no limit); backfill on a
	// reserved node reads it.
	TimeLimit time.Duration
	// Preemptible: the job may be evicted when it runs, and never evicts
	// others.
	Preemptible bool
}

// Placement puts one job on one node, holding the listed GPU indices.
type Placement struct {
	Job  int64
	Node string
	GPUs []int
}

// Plan returns placements for the jobs that fit now. It does not modify its arguments.
//
// Placements come in the order the jobs were considered. Their GPU slices are
// Plan's own: they share no memory with nodes or with each other.
func Plan(nodes []Node, jobs []Job) []Placement {
	return plan(nodes, jobs, nil, false).Placements
}

// PlanWithin is Plan under q's limits: it also returns the jobs held back
// because placing them would take their team or user over a limit, in the
// order they were considered, each with the reason. It does not modify its
// arguments.
func PlanWithin(nodes []Node, jobs []Job, q Quotas) ([]Placement, []Held) {
	r := plan(nodes, jobs, newLedger(q), false)
	return r.Placements, r.Held
}

// Result is what Schedule decides.
type Result struct {
	Placements   []Placement
	Held         []Held
	Reservations []Reservation
	// Preemptions are the evictions proposed for jobs that stay queued.
	Preemptions []Preemption
	// Waits says why each job that stays queued waits, in queue order;
	// Schedule fills it only when asked to explain.
	Waits []Wait
}

// Schedule is PlanWithin that also reports reservations and, with
// explain, why each job that is not placed waits.
func Schedule(nodes []Node, jobs []Job, q Quotas, explain bool) Result {
	return plan(nodes, jobs, newLedger(q), explain)
}

func plan(nodes []Node, jobs []Job, led *ledger, explain bool) Result {
	pools := indexPools(nodes)
	for i := range jobs {
		if jobs[i].Reserve {
			for _, p := range pools {
				p.reserving = true
			}
			break
		}
	}
	var r Result
	// stays are the jobs that stay queued and may preempt, with their
	// waits (at: in r.Waits, -1 when not explained).
	type stay struct {
		j  *Job
		at int
	}
	var stays []stay
	wait := func(j *Job, p *pool, w Wait) {
		at := -1
		if explain {
			at = len(r.Waits)
			r.Waits = append(r.Waits, w)
		}
		if p != nil && p.mayPreempt(j, w) {
			stays = append(stays, stay{j: j, at: at})
		}
	}
	for _, i := range queue(jobs) {
		j := &jobs[i]
		p := pools[j.Pool]
		if p == nil || j.CPUs < 0 || j.Memory < 0 || j.GPUs < 0 {
			wait(j, nil, Wait{Job: j.ID, Kind: WaitNoNode})
			continue
		}
		if led != nil {
			if why := led.over(j, false); why != "" {
				r.Held = append(r.Held, Held{Job: j.ID, Reason: why})
				wait(j, nil, Wait{Job: j.ID, Kind: WaitLimit, Reason: why})
				continue
			}
		}
		pl, ok := p.place(j)
		var by *reserved
		// Backfill and reservations count GPUs, not their models: a job
		// that asks for a model neither backfills nor reserves (yet).
		kind := j.GPUs > 0 && !j.GPUWant.Any()
		if !ok && len(p.res) > 0 && !kind {
			pl, by, ok = p.backfill(j)
		}
		if ok {
			r.Placements = append(r.Placements, pl)
			p.placed(j, pl.Node)
			if led != nil {
				led.charge(j, false)
			}
			continue
		}
		if j.Reserve && !kind {
			if rv, ok := p.reserve(j); ok {
				r.Reservations = append(r.Reservations, rv)
				wait(j, p, Wait{Job: j.ID, Kind: WaitReservation, Node: rv.Node, Start: rv.Start, StartKnown: rv.StartKnown})
				continue
			}
		}
		if by != nil {
			wait(j, p, Wait{Job: j.ID, Kind: WaitReserved, For: by.job, Node: p.ids[by.e.rank]})
			continue
		}
		wait(j, p, Wait{Job: j.ID, Kind: WaitResources})
	}
	evictors := map[*pool]*evictor{}
	for _, st := range stays {
		p := pools[st.j.Pool]
		v := evictors[p]
		if v == nil {
			v = p.evictor()
			evictors[p] = v
		}
		if pr, ok := v.preempt(st.j); ok {
			r.Preemptions = append(r.Preemptions, pr)
			if st.at >= 0 {
				r.Waits[st.at] = Wait{Job: st.j.ID, Kind: WaitPreempting, Node: pr.Node}
			}
		}
	}
	return r
}

// Order returns the positions of jobs in queue order: the order Plan
// considers them in.
func Order(jobs []Job) []int { return queue(jobs) }

// queue returns the positions of jobs in the order Plan considers them. The
// position breaks ties between equal IDs, so even bad input has one order.
func queue(jobs []Job) []int {
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		x, y := &jobs[a], &jobs[b]
		if x.Reserve != y.Reserve {
			if x.Reserve {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(y.Score, x.Score); c != 0 {
			return c
		}
		if c := cmp.Compare(y.Priority, x.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(x.ID, y.ID); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return order
}

// shape is what a job asks for.
type shape struct {
	cpus dspool.MilliCPU
	mem  dspool.Bytes
	gpus int
}

// covers reports whether s asks for at least as much as t in every dimension.
func (s shape) covers(t shape) bool {
	return s.cpus >= t.cpus && s.mem >= t.mem && s.gpus >= t.gpus
}

// entry is a node in its pool's index: its free cpus and memory, and its rank.
type entry struct {
	cpus dspool.MilliCPU
	mem  dspool.Bytes
	rank int32 // the node's position in pool.ids
}

// compare orders entries by score rules 2 to 4.
func compare(a, b entry) int {
	if c := cmp.Compare(a.cpus, b.cpus); c != 0 {
		return c
	}
	if c := cmp.Compare(a.mem, b.mem); c != 0 {
		return c
	}
	return cmp.Compare(a.rank, b.rank)
}

// maxFailed bounds pool.failed, so checking it stays O(1) per job.
const maxFailed = 32

// pool is the working state of one pool's nodes during a plan.
type pool struct {
	ids  []string // node IDs by rank, in string order
	gpus [][]int  // free GPU indices by rank; Plan's own copy
	// byGPUs[k] holds the nodes with k free GPUs, sorted by compare. Rule 1
	// is then the order of the buckets, and rules 2 to 4 the order in one.
	byGPUs [][]entry
	// failed holds shapes that found no node, none covering another. Free
	// resources only shrink during a plan, so a job covering one of them
	// cannot fit either.
	failed []shape
	// closed[rank] is Node.Closed of each node; closedTo the users any
	// node is closed to.
	closed   []map[string]bool
	closedTo map[string]bool
	// releases[rank] is what the node's running work and the jobs placed
	// on it in this plan give back at their time limits; res the nodes
	// reserved in this plan (out of byGPUs).
	releases  [][]Release
	res       []*reserved
	reserving bool // some job of the plan may reserve: track releases
	// preempt[rank] is the preemptible work running on each node (nil:
	// none on any), grace the pool's preemption grace.
	preempt    [][]Running
	grace      time.Duration
	preemptors int // jobs that may look for victims, up to MaxPreemptors
	// info[rank] is Node.GPUs of each node.
	info [][]dspool.GPU
}

// indexPools builds the working state of every pool that has nodes.
func indexPools(nodes []Node) map[string]*pool {
	members := map[string][]int{}
	for i := range nodes {
		members[nodes[i].Pool] = append(members[nodes[i].Pool], i)
	}
	pools := make(map[string]*pool, len(members))
	for name, idx := range members {
		pools[name] = newPool(nodes, idx)
	}
	return pools
}

// newPool indexes nodes[idx], which all belong to one pool.
func newPool(nodes []Node, idx []int) *pool {
	// Rank by ID; the input position breaks ties between duplicate IDs.
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(nodes[a].ID, nodes[b].ID); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	total := 0
	for _, i := range idx {
		total += len(nodes[i].FreeGPUs)
	}
	flat := make([]int, 0, total)
	p := &pool{ids: make([]string, len(idx)), gpus: make([][]int, len(idx)), closed: make([]map[string]bool, len(idx)),
		releases: make([][]Release, len(idx)), info: make([][]dspool.GPU, len(idx))}
	for r, i := range idx {
		n := &nodes[i]
		p.ids[r] = n.ID
		p.releases[r] = slices.Clip(n.Releases) // appends copy, never write the caller's array
		p.info[r] = n.GPUs
		p.close(r, n.Closed)
		if len(n.Running) > 0 {
			if p.preempt == nil {
				p.preempt = make([][]Running, len(idx))
			}
			p.preempt[r] = n.Running // read only: the evictor copies what it changes
		}
		p.grace = max(p.grace, n.PreemptGrace)
		start := len(flat)
		flat = append(flat, n.FreeGPUs...)
		free := flat[start:len(flat):len(flat)]
		slices.Sort(free) // documented as ascending; lowest-first relies on it
		p.gpus[r] = free
		p.add(entry{cpus: n.FreeCPUs, mem: n.FreeMem, rank: int32(r)}, len(free))
	}
	for _, b := range p.byGPUs {
		slices.SortFunc(b, compare)
	}
	return p
}

// close records the users the node of rank r is closed to.
func (p *pool) close(r int, users map[string]bool) {
	p.closed[r] = users
	for u, c := range users {
		if c {
			if p.closedTo == nil {
				p.closedTo = map[string]bool{}
			}
			p.closedTo[u] = true
		}
	}
}

// add appends e to bucket k, unsorted.
func (p *pool) add(e entry, k int) {
	for len(p.byGPUs) <= k {
		p.byGPUs = append(p.byGPUs, nil)
	}
	p.byGPUs[k] = append(p.byGPUs[k], e)
}

// place puts j on the best node of p that fits it, if any.
func (p *pool) place(j *Job) (Placement, bool) {
	want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
	for _, f := range p.failed {
		if want.covers(f) {
			return Placement{}, false
		}
	}
	closed := p.closedTo[j.User]
	if want.gpus > 0 && !j.GPUWant.Any() {
		return p.placeKind(j, want)
	}
	// Buckets in rule 1 order: the first one with a fitting node has the best.
	for k := want.gpus; k < len(p.byGPUs); k++ {
		i, ok := 0, false
		if closed {
			i, ok = p.findOpen(p.byGPUs[k], want, j.User)
		} else {
			i, ok = find(p.byGPUs[k], want.cpus, want.mem)
		}
		if ok {
			return p.take(k, i, j.ID, want), true
		}
	}
	if !closed {
		p.remember(want)
	}
	return Placement{}, false
}

// findOpen returns the position of the first entry of es that fits want
// and is open to user.
func (p *pool) findOpen(es []entry, want shape, user string) (int, bool) {
	for i, e := range es {
		if e.cpus >= want.cpus && e.mem >= want.mem && !p.closed[e.rank][user] {
			return i, true
		}
	}
	return 0, false
}

// find returns the position of the first entry of es with at least cpus and
// mem free. Within each run of entries with equal cpus, memory ascends, so the
// fitting entries of a run are a suffix: the search costs two binary searches
// per distinct free-cpu amount, of which a pool has few.
func find(es []entry, cpus dspool.MilliCPU, mem dspool.Bytes) (int, bool) {
	i := sort.Search(len(es), func(k int) bool { return es[k].cpus >= cpus })
	for i < len(es) {
		run := es[i:]
		c := run[0].cpus
		end := sort.Search(len(run), func(k int) bool { return run[k].cpus > c })
		if run[end-1].mem >= mem {
			return i + sort.Search(end, func(k int) bool { return run[k].mem >= mem }), true
		}
		i += end
	}
	return 0, false
}

// take gives node byGPUs[k][i] to the job and moves it to where its new
// free resources sort.
func (p *pool) take(k, i int, job int64, want shape) Placement {
	es := p.byGPUs[k]
	e := es[i]
	e.cpus -= want.cpus
	e.mem -= want.mem
	free := p.gpus[e.rank]
	var held []int
	if want.gpus > 0 {
		held = free[:want.gpus:want.gpus]
		p.gpus[e.rank] = free[want.gpus:]
		p.byGPUs[k] = slices.Delete(es, i, i+1)
		b := p.byGPUs[k-want.gpus]
		at, _ := slices.BinarySearchFunc(b, e, compare)
		p.byGPUs[k-want.gpus] = slices.Insert(b, at, e)
	} else {
		// The node only moves left in its bucket, past the nodes whose free
		// amounts lie between its old and new ones: usually a few.
		at, _ := slices.BinarySearchFunc(es[:i], e, compare)
		copy(es[at+1:i+1], es[at:i])
		es[at] = e
	}
	return Placement{Job: job, Node: p.ids[e.rank], GPUs: held}
}

// placeKind puts j, which asks for GPUs of a model or memory, on the first
// node in score order with enough free GPUs that fit it, holding the lowest
// of those.
func (p *pool) placeKind(j *Job, want shape) (Placement, bool) {
	for k := want.gpus; k < len(p.byGPUs); k++ {
		for i, e := range p.byGPUs[k] {
			if e.cpus < want.cpus || e.mem < want.mem || p.closed[e.rank][j.User] {
				continue
			}
			if held := p.fitting(e.rank, j.GPUWant, want.gpus); held != nil {
				return p.takeGPUs(k, i, j.ID, want, held), true
			}
		}
	}
	return Placement{}, false
}

// fitting returns the lowest n free GPUs of the node of rank r that w
// takes, or nil when it has fewer.
func (p *pool) fitting(r int32, w dspool.GPUWant, n int) []int {
	var held []int
	for _, idx := range p.gpus[r] {
		for _, g := range p.info[r] {
			if g.Index == idx && w.Fits(g) {
				held = append(held, idx)
				break
			}
		}
		if len(held) == n {
			return held
		}
	}
	return nil
}

// takeGPUs gives node byGPUs[k][i] to the job, holding the GPUs held, and
// moves it to its new bucket.
func (p *pool) takeGPUs(k, i int, job int64, want shape, held []int) Placement {
	e := p.byGPUs[k][i]
	e.cpus -= want.cpus
	e.mem -= want.mem
	left := make([]int, 0, len(p.gpus[e.rank])-len(held))
	for _, g := range p.gpus[e.rank] {
		if !slices.Contains(held, g) {
			left = append(left, g)
		}
	}
	p.gpus[e.rank] = left
	p.byGPUs[k] = slices.Delete(p.byGPUs[k], i, i+1)
	b := p.byGPUs[k-len(held)]
	at, _ := slices.BinarySearchFunc(b, e, compare)
	p.byGPUs[k-len(held)] = slices.Insert(b, at, e)
	return Placement{Job: job, Node: p.ids[e.rank], GPUs: held}
}

// remember records that nothing in p fits s. No remembered shape covers s,
// or place would not have searched; those s covers are dropped, as s now
// catches every job they would.
func (p *pool) remember(s shape) {
	p.failed = slices.DeleteFunc(p.failed, func(f shape) bool { return f.covers(s) })
	if len(p.failed) < maxFailed {
		p.failed = append(p.failed, s)
	}
}
