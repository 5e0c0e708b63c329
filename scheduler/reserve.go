package scheduler

import (
	"cmp"
	"slices"
	"sort"
	"time"
)

// MaxReservations bounds the nodes one pool holds reserved in a plan, so
// that finding a reservation, and backfilling around the reservations,
// stays cheap.
const MaxReservations = 8

// Reservation holds a node for a job that fits nowhere now: it starts there
// Start from now, when the node's running work has reached its time limits
// (StartKnown false: work without a time limit must end first).
type Reservation struct {
	Job        int64
	Node       string
	Start      time.Duration
	StartKnown bool
}

// WaitKind is why a job stays queued after a plan.
type WaitKind string

const (
	WaitNoNode      WaitKind = "no_node"     // its pool has no node that takes it now
	WaitLimit       WaitKind = "limit"       // a limit of its team or user (Reason)
	WaitResources   WaitKind = "resources"   // no node has room for it
	WaitReserved    WaitKind = "reserved"    // the node with room is reserved for job For
	WaitReservation WaitKind = "reservation" // it holds a reservation of Node
)

// Wait is why one job stays queued.
type Wait struct {
	Job    int64
	Kind   WaitKind
	Reason string // WaitLimit: which limit
	// Node is the node reserved, by this job (WaitReservation) or by job
	// For (WaitReserved).
	Node       string
	For        int64
	Start      time.Duration // WaitReservation: as Reservation's
	StartKnown bool
}

// reserved is a node taken out of its pool's index for a reservation.
type reserved struct {
	job   int64
	e     entry // what is free on the node now
	start time.Duration
	known bool
	// spare is what the node has free at the start beyond what the
	// reservation needs: work that runs past the start may take it.
	spare shape
}

func (s shape) minus(t shape) shape {
	return shape{cpus: s.cpus - t.cpus, mem: s.mem - t.mem, gpus: s.gpus - t.gpus}
}

// placed records what a job placed on node gives back at its time limit,
// for reservations later in the plan.
func (p *pool) placed(j *Job, node string) {
	if !p.reserving || j.TimeLimit <= 0 {
		return
	}
	r := sort.SearchStrings(p.ids, node)
	if r < len(p.ids) && p.ids[r] == node {
		p.releases[r] = append(p.releases[r], Release{After: j.TimeLimit, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs})
	}
}

// backfill puts j on a reserved node that has room for it now, if j ends
// before the reservation starts or fits in what the node has to spare. It
// returns the first reservation that had room but would have been delayed,
// when it places nothing.
func (p *pool) backfill(j *Job) (Placement, *reserved, bool) {
	want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
	var blocked *reserved
	for _, r := range p.res {
		rank := r.e.rank
		if r.e.cpus < want.cpus || r.e.mem < want.mem || len(p.gpus[rank]) < want.gpus || p.closed[rank][j.User] {
			continue
		}
		before := r.known && j.TimeLimit > 0 && j.TimeLimit <= r.start
		if !before {
			if !r.spare.covers(want) {
				if blocked == nil {
					blocked = r
				}
				continue
			}
			r.spare = r.spare.minus(want)
		}
		r.e.cpus -= want.cpus
		r.e.mem -= want.mem
		var held []int
		if want.gpus > 0 {
			free := p.gpus[rank]
			held = free[:want.gpus:want.gpus]
			p.gpus[rank] = free[want.gpus:]
		}
		return Placement{Job: j.ID, Node: p.ids[rank], GPUs: held}, nil, true
	}
	return Placement{}, blocked, false
}

// reserve finds the node of p, open to j's user, where j can start
// soonest, and takes it out of the index for j. Known starts come before
// unknown ones; among unknown ones, the node that misses least once its
// known releases are back (GPUs, then cpus, then memory); then the rank.
func (p *pool) reserve(j *Job) (Reservation, bool) {
	if len(p.res) >= MaxReservations {
		return Reservation{}, false
	}
	want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
	type cand struct {
		k, i  int
		start time.Duration
		known bool
		miss  shape
		free  shape // at the start (known), or after every release (unknown)
		rank  int32
	}
	better := func(a, b cand) bool {
		if a.known != b.known {
			return a.known
		}
		if a.known && a.start != b.start {
			return a.start < b.start
		}
		if !a.known {
			if c := cmp.Or(cmp.Compare(a.miss.gpus, b.miss.gpus), cmp.Compare(a.miss.cpus, b.miss.cpus), cmp.Compare(a.miss.mem, b.miss.mem)); c != 0 {
				return c < 0
			}
		}
		return a.rank < b.rank
	}
	var best cand
	found := false
	var rel []Release
	for k, es := range p.byGPUs {
		for i, e := range es {
			if p.closed[e.rank][j.User] {
				continue
			}
			c := cand{k: k, i: i, rank: e.rank}
			rel = append(rel[:0], p.releases[e.rank]...)
			c.start, c.known, c.free = startOn(shape{cpus: e.cpus, mem: e.mem, gpus: k}, rel, want)
			if !c.known {
				m := want.minus(c.free)
				c.miss = shape{cpus: max(m.cpus, 0), mem: max(m.mem, 0), gpus: max(m.gpus, 0)}
			}
			if !found || better(c, best) {
				best, found = c, true
			}
		}
	}
	if !found {
		return Reservation{}, false
	}
	e := p.byGPUs[best.k][best.i]
	p.byGPUs[best.k] = slices.Delete(p.byGPUs[best.k], best.i, best.i+1)
	sp := best.free.minus(want)
	r := &reserved{job: j.ID, e: e, start: best.start, known: best.known,
		spare: shape{cpus: max(sp.cpus, 0), mem: max(sp.mem, 0), gpus: max(sp.gpus, 0)}}
	p.res = append(p.res, r)
	return Reservation{Job: j.ID, Node: p.ids[e.rank], Start: best.start, StartKnown: best.known}, true
}

// Fits reports whether a node of j's pool, open to its user, has room for
// j now, before any plan. It does not modify its arguments.
func Fits(nodes []Node, j Job) bool {
	want := shape{cpus: j.CPUs, mem: j.Memory, gpus: j.GPUs}
	for i := range nodes {
		n := &nodes[i]
		if n.Pool == j.Pool && !n.Closed[j.User] && (shape{cpus: n.FreeCPUs, mem: n.FreeMem, gpus: len(n.FreeGPUs)}).covers(want) {
			return true
		}
	}
	return false
}

// startOn returns when a node with free resources and the releases rel
// (which it sorts) can hold want, whether it ever can by them, and what it
// has free then (or after every release, when it cannot).
func startOn(free shape, rel []Release, want shape) (time.Duration, bool, shape) {
	if free.covers(want) {
		return 0, true, free
	}
	slices.SortFunc(rel, func(a, b Release) int { return cmp.Compare(a.After, b.After) })
	for _, r := range rel {
		free = shape{cpus: free.cpus + r.CPUs, mem: free.mem + r.Memory, gpus: free.gpus + r.GPUs}
		if free.covers(want) {
			return max(r.After, 0), true, free
		}
	}
	return 0, false, free
}
