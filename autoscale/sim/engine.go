package sim

import (
	"container/heap"
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/scheduler"
)

// node is a node of the simulated pool.
type node struct {
	id                 string
	created, readyAt   time.Time
	ready              bool
	idleSince          time.Time
	attempts, sessions int
	freeCPUs           dspool.MilliCPU
	freeMem            dspool.Bytes
	gpuHeld            []bool
}

func (n *node) idle() bool { return n.attempts == 0 && n.sessions == 0 }

// work is a job or a session from its arrival to its end.
type work struct {
	a     *Arrival
	id    int64 // order of arrival in the pool
	node  *node
	gpus  []int
	lease *lease
}

// lease is a user's reservation on a node of an interactive pool, shared by
// all the user's sessions there, as the control plane shares it.
type lease struct {
	user     string
	node     *node
	sessions int
}

type finish struct {
	at time.Time
	w  *work
}

type finishes []finish

func (h finishes) Len() int { return len(h) }
func (h finishes) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].w.id < h[j].w.id
}
func (h finishes) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *finishes) Push(x any)   { *h = append(*h, x.(finish)) }
func (h *finishes) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// poolSim is one pool under one policy.
type poolSim struct {
	pool *dspool.Pool
	pol  *dspool.Autoscale
	// hide leaves waiting work out of the State given to Decide.
	hide     bool
	opt      Options
	start    time.Time
	end      time.Time // the trace's end: every pool runs at least until then
	arrivals []*Arrival
	spec     dspool.SessionSpec

	nextArrival int
	nodes       []*node
	byID        map[string]*node
	seq         int
	jobs        []*work // queued, oldest first
	sessions    []*work // waiting for a node, oldest first
	running     finishes
	leases      map[string]*lease
	dirty       bool // something arrived, ended or became ready: place again

	fired      []time.Time
	boundaries []time.Time // when the schedules' bounds may change
	watch      *ruleWatch  // nil when the policy has no rules
	st         autoscale.State
	acted      bool

	seconds int64 // node-seconds of removed nodes
	added   int
	peak    int
	waits   [2][]int64 // jobs, sessions; seconds
	gaveUp  int
}

func newPoolSim(p *dspool.Pool, hide bool, start, end time.Time, arrivals []*Arrival, opt Options) *poolSim {
	s := &poolSim{pool: p, pol: autoscale.Policy(p), hide: hide, opt: opt, start: start, end: end, arrivals: arrivals,
		byID: map[string]*node{}, leases: map[string]*lease{}, spec: p.SessionSettings()}
	s.fired = make([]time.Time, len(s.pol.Rules))
	s.st = autoscale.State{Pool: p, Fired: s.fired}
	if len(s.pol.Rules) > 0 {
		s.watch = newRuleWatch(s.pol.Rules, start)
	}
	return s
}

// run simulates the pool from start until its work is done, the trace's
// end has passed, and the pool is back at its floor.
func (s *poolSim) run() (Figures, error) {
	// Bound the run: work that never starts would otherwise loop forever.
	limit := s.end.Add(8 * 24 * time.Hour)
	s.boundaries = boundaries(s.pol, s.start, limit)
	lo, _, _ := autoscale.Bounds(s.pol, s.start)
	for range lo {
		n := s.addNode(s.start)
		n.ready = true
	}
	t := s.start
	for {
		d, err := s.step(t)
		if err != nil {
			return Figures{}, err
		}
		if s.done(t, d) {
			break
		}
		next := s.next(t)
		if !next.After(t) || next.After(limit) {
			return Figures{}, fmt.Errorf("work still waits at %s, %s after the trace's end: %d jobs queued, %d sessions waiting, %d running",
				t.Format(time.RFC3339), t.Sub(s.end), len(s.jobs), len(s.sessions), len(s.running))
		}
		t = s.advance(t, next)
	}
	f := Figures{Pool: s.pool.Name, NodesAdded: s.added, PeakNodes: s.peak, SimEnd: t.In(s.start.Location())}
	secs := s.seconds
	for _, n := range s.nodes {
		secs += int64(t.Sub(n.created) / time.Second)
	}
	f.NodeHours = float64(secs) / 3600
	f.Cost = f.NodeHours * s.pool.PricePerNodeHour
	var arrived [2]int
	for _, a := range s.arrivals {
		if a.Kind == KindJob {
			arrived[0]++
		} else {
			arrived[1]++
		}
	}
	f.waits = s.waits
	f.Jobs = summarize(arrived[0], s.waits[0], 0)
	f.Sessions = summarize(arrived[1], s.waits[1], s.gaveUp)
	return f, nil
}

// step does what happens at t: work ends, nodes become ready, work
// arrives and is placed, sessions give up, and the pool decides.
func (s *poolSim) step(t time.Time) (autoscale.Decision, error) {
	for len(s.running) > 0 && !s.running[0].at.After(t) {
		f := heap.Pop(&s.running).(finish)
		s.release(f.w, f.at)
	}
	for _, n := range s.nodes {
		if !n.ready && !n.readyAt.After(t) {
			n.ready = true
			s.dirty = true
		}
	}
	for ; s.nextArrival < len(s.arrivals) && !s.arrivals[s.nextArrival].At.After(t); s.nextArrival++ {
		w := &work{a: s.arrivals[s.nextArrival], id: int64(s.nextArrival)}
		if w.a.Kind == KindJob {
			s.jobs = append(s.jobs, w)
		} else {
			s.sessions = append(s.sessions, w)
		}
		s.dirty = true
	}
	if s.dirty {
		s.dirty = false
		s.routeSessions(t)
		s.placeJobs(t)
	}
	s.giveUp(t)
	st := s.state(t)
	d := autoscale.Decide(st, t)
	if err := s.apply(d, t); err != nil {
		return d, err
	}
	if s.watch != nil && !s.opt.EveryTick {
		s.watch.snapshot(t)
	}
	return d, nil
}

// state is what Decide is told of the pool at t, as the control plane's
// loop would build it; it records the metrics of t for the rules.
func (s *poolSim) state(t time.Time) *autoscale.State {
	st := &s.st
	st.Nodes = st.Nodes[:0]
	for _, n := range s.nodes {
		an := autoscale.Node{ID: n.id, Name: n.id, State: dspool.NodeProvisioning, Created: n.created, IdleSince: n.idleSince,
			Attempts: n.attempts, Sessions: n.sessions}
		if n.ready {
			an.State = dspool.NodeReady
			an.FreeCPUs, an.FreeMem = n.freeCPUs, n.freeMem
			for _, h := range n.gpuHeld {
				if h {
					an.GPUsHeld++
				} else {
					an.FreeGPUs++
				}
			}
			// Running work uses what it reserved.
			an.Load1 = float64(s.pool.Node.CPUs-n.freeCPUs) / 1000
			an.MemUsed = s.pool.Node.Memory - n.freeMem
		}
		st.Nodes = append(st.Nodes, an)
	}
	st.Waiting = st.Waiting[:0]
	for _, w := range s.sessions {
		st.Waiting = append(st.Waiting, autoscale.Demand{Kind: autoscale.KindSession, CPUs: s.spec.CPUs, Memory: s.spec.Memory, Since: w.a.At})
	}
	for _, w := range s.jobs {
		st.Waiting = append(st.Waiting, autoscale.Demand{Kind: autoscale.KindJob, CPUs: w.a.CPUs, Memory: w.a.Memory, GPUs: w.a.GPUs, Since: w.a.At})
	}
	if s.watch != nil {
		s.watch.record(autoscale.Measure(st, t))
		st.History = s.watch.history
	}
	if s.hide {
		st.Waiting = st.Waiting[:0] // counted in the metrics, not packed
	}
	return st
}

// apply carries out the decision at t.
func (s *poolSim) apply(d autoscale.Decision, t time.Time) error {
	for _, r := range d.Remove {
		n := s.byID[r.ID]
		if n == nil {
			return fmt.Errorf("decide removed %s, which the pool does not have", r.ID)
		}
		if !n.idle() {
			return fmt.Errorf("decide removed %s, which has work (%d attempts, %d sessions)", r.ID, n.attempts, n.sessions)
		}
		s.seconds += int64(t.Sub(n.created) / time.Second)
		delete(s.byID, n.id)
		for i, m := range s.nodes {
			if m == n {
				s.nodes = append(s.nodes[:i], s.nodes[i+1:]...)
				break
			}
		}
	}
	for range d.Add {
		s.addNode(t)
	}
	for _, i := range d.Fired {
		s.fired[i] = t
	}
	s.acted = d.Add > 0 || len(d.Remove) > 0 || len(d.Fired) > 0
	return nil
}

func (s *poolSim) addNode(t time.Time) *node {
	s.seq++
	n := &node{id: fmt.Sprintf("%s-%06d", s.pool.Name, s.seq), created: t, readyAt: t.Add(s.opt.BootTime), idleSince: t,
		freeCPUs: s.pool.Node.CPUs, freeMem: s.pool.Node.Memory, gpuHeld: make([]bool, s.pool.Node.GPUs)}
	s.nodes = append(s.nodes, n)
	s.byID[n.id] = n
	s.added++
	s.peak = max(s.peak, len(s.nodes))
	return n
}

// done reports whether the run is over at t: the trace's end has passed,
// no work is left, and the pool is back at its floor (and warm spares).
func (s *poolSim) done(t time.Time, d autoscale.Decision) bool {
	if t.Before(s.end) || s.nextArrival < len(s.arrivals) || len(s.jobs) > 0 || len(s.sessions) > 0 || len(s.running) > 0 {
		return false
	}
	if s.acted {
		return false
	}
	return len(s.nodes) <= max(d.Min, min(s.pol.WarmSpares, d.Max))
}

// next returns the next second at which Decide's answer may differ from
// the one at t, leaving out rules' means (advance watches those).
func (s *poolSim) next(t time.Time) time.Time {
	if s.opt.EveryTick || s.acted {
		return t.Add(time.Second)
	}
	next := time.Time{}
	consider := func(x time.Time) {
		if x.After(t) && (next.IsZero() || x.Before(next)) {
			next = x
		}
	}
	consider(s.end)
	if s.nextArrival < len(s.arrivals) {
		consider(s.arrivals[s.nextArrival].At)
	}
	if len(s.running) > 0 {
		consider(s.running[0].at)
	}
	for _, n := range s.nodes {
		if !n.ready {
			consider(n.readyAt)
			consider(n.created.Add(time.Duration(s.pol.BootTimeout)))
		} else if n.idle() {
			consider(n.idleSince.Add(time.Duration(s.pol.IdleTimeout)))
		}
	}
	if len(s.sessions) > 0 {
		consider(s.sessions[0].a.At.Add(time.Duration(s.pol.WaitTimeout)))
	}
	for i, f := range s.fired {
		if !f.IsZero() {
			consider(f.Add(time.Duration(s.pol.Rules[i].Cooldown)))
		}
	}
	for len(s.boundaries) > 0 && !s.boundaries[0].After(t) {
		s.boundaries = s.boundaries[1:]
	}
	if len(s.boundaries) > 0 {
		consider(s.boundaries[0])
	}
	return next
}

// advance moves the clock from t towards next. The pool's state does not
// change in between, so the metrics of each second are those at t; it
// records them, and stops early at a second where a rule's mean may cross
// its threshold.
func (s *poolSim) advance(t, next time.Time) time.Time {
	if s.watch == nil {
		return next
	}
	for u := t.Add(time.Second); u.Before(next); u = u.Add(time.Second) {
		s.watch.repeat(u)
		if s.watch.mayFlip(u) {
			return u // step records the sample of u again, the same
		}
	}
	return next
}

// release ends w at t.
func (s *poolSim) release(w *work, t time.Time) {
	n := w.node
	if w.a.Kind == KindJob {
		n.attempts--
		n.freeCPUs += w.a.CPUs
		n.freeMem += w.a.Memory
		for _, g := range w.gpus {
			n.gpuHeld[g] = false
		}
	} else {
		l := w.lease
		l.sessions--
		if l.sessions > 0 {
			return
		}
		delete(s.leases, l.user)
		n.sessions--
		n.freeCPUs += s.spec.CPUs
		n.freeMem += s.spec.Memory
	}
	if n.idle() {
		n.idleSince = t
	}
	s.dirty = true
}

func (s *poolSim) begin(w *work, n *node, t time.Time) {
	w.node = n
	heap.Push(&s.running, finish{t.Add(w.a.Duration), w})
	k := 0
	if w.a.Kind == KindSession {
		k = 1
	}
	s.waits[k] = append(s.waits[k], int64(t.Sub(w.a.At)/time.Second))
}

// routeSessions routes waiting sessions, oldest first, with scheduler.Route
// and the pool's placement (or the one Options.Routing forces).
func (s *poolSim) routeSessions(t time.Time) {
	if len(s.sessions) == 0 {
		return
	}
	var nodes []scheduler.SessionNode
	for _, n := range s.nodes {
		if n.ready {
			nodes = append(nodes, scheduler.SessionNode{Node: scheduler.Node{ID: n.id, Pool: s.pool.Name, CPUs: s.pool.Node.CPUs,
				Memory: s.pool.Node.Memory, FreeCPUs: n.freeCPUs, FreeMem: n.freeMem}, Sessions: n.sessions})
		}
	}
	cpus, mem := s.spec.CPUs, s.spec.Memory
	waiting := s.sessions[:0]
	for _, w := range s.sessions {
		affinity := ""
		if l := s.leases[w.a.User]; l != nil {
			affinity = l.node.id
		}
		id, joined, ok := s.route(nodes, affinity, cpus, mem)
		if !ok {
			waiting = append(waiting, w)
			continue
		}
		n := s.byID[id]
		if joined {
			w.lease = s.leases[w.a.User]
			w.lease.sessions++
		} else {
			w.lease = &lease{user: w.a.User, node: n, sessions: 1}
			s.leases[w.a.User] = w.lease
			n.sessions++
			n.freeCPUs -= cpus
			n.freeMem -= mem
			for i := range nodes {
				if nodes[i].ID == id {
					nodes[i].FreeCPUs -= cpus
					nodes[i].FreeMem -= mem
					nodes[i].Sessions++
				}
			}
		}
		s.begin(w, n, t)
	}
	clear(s.sessions[len(waiting):])
	s.sessions = waiting
}

func (s *poolSim) route(nodes []scheduler.SessionNode, affinity string, cpus dspool.MilliCPU, mem dspool.Bytes) (string, bool, bool) {
	placement := s.spec.Placement
	if s.opt.Routing != "" {
		placement = s.opt.Routing
	}
	return scheduler.Route(nodes, affinity, cpus, mem, placement)
}

// placeJobs starts the queued jobs that scheduler.Plan places.
func (s *poolSim) placeJobs(t time.Time) {
	if len(s.jobs) == 0 {
		return
	}
	var nodes []scheduler.Node
	for _, n := range s.nodes {
		if !n.ready {
			continue
		}
		sn := scheduler.Node{ID: n.id, Pool: s.pool.Name, CPUs: s.pool.Node.CPUs, Memory: s.pool.Node.Memory,
			FreeCPUs: n.freeCPUs, FreeMem: n.freeMem}
		for g, h := range n.gpuHeld {
			if !h {
				sn.FreeGPUs = append(sn.FreeGPUs, g)
			}
		}
		nodes = append(nodes, sn)
	}
	if len(nodes) == 0 {
		return
	}
	jobs := make([]scheduler.Job, len(s.jobs))
	byID := make(map[int64]*work, len(s.jobs))
	for i, w := range s.jobs {
		jobs[i] = scheduler.Job{ID: w.id, Pool: s.pool.Name, CPUs: w.a.CPUs, Memory: w.a.Memory, GPUs: w.a.GPUs}
		byID[w.id] = w
	}
	placed := scheduler.Plan(nodes, jobs)
	if len(placed) == 0 {
		return
	}
	for _, p := range placed {
		w, n := byID[p.Job], s.byID[p.Node]
		n.attempts++
		n.freeCPUs -= w.a.CPUs
		n.freeMem -= w.a.Memory
		for _, g := range p.GPUs {
			n.gpuHeld[g] = true
		}
		w.gpus = p.GPUs
		s.begin(w, n, t)
		delete(byID, p.Job)
	}
	queued := s.jobs[:0]
	for _, w := range s.jobs {
		if byID[w.id] != nil {
			queued = append(queued, w)
		}
	}
	clear(s.jobs[len(queued):])
	s.jobs = queued
}

// giveUp ends the wait of sessions that have waited the pool's wait_timeout.
func (s *poolSim) giveUp(t time.Time) {
	timeout := time.Duration(s.pol.WaitTimeout)
	keep := s.sessions[:0]
	for _, w := range s.sessions {
		if t.Sub(w.a.At) >= timeout {
			s.waits[1] = append(s.waits[1], int64(timeout/time.Second))
			s.gaveUp++
			continue
		}
		keep = append(keep, w)
	}
	clear(s.sessions[len(keep):])
	s.sessions = keep
}
