// Package autoscale decides how many nodes each pool should have. Decide is a
// pure function of (pool state, policy, now): no I/O, no clock, no
// goroutines. The control plane's loop and `dspool simulate` both call it,
// the one with live state and the other with a replayed trace in virtual
// time, so what the simulator prints is what the pool would do.
//
// What Decide does, in order:
//
//  1. Nodes whose setup failed, and nodes not ready within the boot timeout,
//     are removed.
//  2. Waiting work (queued jobs, sessions waiting for a node) is packed,
//     largest first, into the free room of ready nodes and the whole of
//     provisioning ones. What is left is packed into new nodes of the pool's
//     size: that is how many nodes to add, at once, whatever the rules say.
//  3. The floor (min, raised by active schedules) and warm spares add nodes
//     too; scale-out rules add their step when their metric's mean over the
//     window holds and the rule is out of its cooldown.
//  4. Everything is capped by max (lowered by active schedules).
//  5. When nothing is added, idle nodes (no attempt, no session, no waiting
//     work packed onto them) go: those idle past the idle timeout, and the
//     step of a scale-in rule that holds. They are taken in the order of the
//     pool's scale-in policy and never below the floor or the warm spares.
//     A node with work is never chosen.
//
// Teams and users may have a limit on the nodes added for their work: the
// caller applies Budgets.Cap to the waiting work before Decide, so work past
// an owner's budget brings no node (it still runs in room that exists).
package autoscale

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Node is a node of the pool as the autoscaler sees it.
type Node struct {
	ID      string
	Name    string
	State   dspool.NodeState
	Created time.Time
	// IdleSince is when the node last had work (its creation when it never
	// had any); it matters only when Attempts and Sessions are both 0.
	IdleSince time.Time
	Attempts  int
	Sessions  int
	// Free is what a ready node has free now (ignored for other states:
	// a provisioning node counts with the pool's whole node size).
	FreeCPUs dspool.MilliCPU
	FreeMem  dspool.Bytes
	FreeGPUs int
	// Measured use, for rules.
	Load1    float64
	MemUsed  dspool.Bytes
	GPUsHeld int
}

// Idle reports whether the node has no work at all.
func (n *Node) Idle() bool { return n.Attempts == 0 && n.Sessions == 0 }

// Kinds of waiting work.
const (
	KindJob     = "job"
	KindSession = "session"
)

// Demand is one piece of work waiting for room in the pool: a queued job or
// a session (an SSH login, a notebook start) waiting for a node.
type Demand struct {
	Kind   string
	CPUs   dspool.MilliCPU
	Memory dspool.Bytes
	GPUs   int
	Since  time.Time
	// Owners are whose node limits the work counts against (keys of
	// Budgets); Decide does not read them.
	Owners []string
}

// Sample is the pool's metrics at one moment, indexed like Metrics.
type Sample struct {
	At     time.Time
	Values [6]float64
}

// Metrics are the names of Sample.Values, in order.
var Metrics = [6]string{dspool.MetricCPU, dspool.MetricMemory, dspool.MetricGPU, dspool.MetricQueuedJobs,
	dspool.MetricPendingSessions, dspool.MetricSessionsPerNode}

func metricIndex(name string) int {
	for i, m := range Metrics {
		if m == name {
			return i
		}
	}
	return -1
}

// State is what Decide knows of one pool.
type State struct {
	Pool    *dspool.Pool
	Nodes   []Node
	Waiting []Demand
	// History holds samples, oldest first, for the rules' windows; Measure
	// gives the sample of the present.
	History []Sample
	// Fired is when each rule of Pool.Autoscale.Rules last acted (zero:
	// never); a rule acts again only after its cooldown.
	Fired []time.Time
	// Backoff: the provider failed, and no node is asked for before then.
	Backoff       time.Time
	BackoffReason string
}

// Removal is a node to drain and remove, and why.
type Removal struct {
	ID, Name string
	Reason   string
}

// Decision is what the pool should do now.
type Decision struct {
	Add       int
	AddReason string
	Remove    []Removal
	// Fired lists the rules (by index) that acted: their cooldown starts now.
	Fired []int
	// Waiting says why work that waits gets no new node now (the pool is at
	// its max, or the provider is backing off); empty when it will.
	Waiting string
	// Min and Max are the bounds in force now (schedules applied).
	Min, Max int
}

// Measure returns the pool's metrics now.
func Measure(st *State, now time.Time) Sample {
	s := Sample{At: now}
	var load, cores float64
	var used, mem dspool.Bytes
	var held, gpus, ready, sessions int
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.State != dspool.NodeReady {
			continue
		}
		ready++
		load += n.Load1
		cores += float64(st.Pool.Node.CPUs) / 1000
		used += n.MemUsed
		mem += st.Pool.Node.Memory
		held += n.GPUsHeld
		gpus += st.Pool.Node.GPUs
		sessions += n.Sessions
	}
	if cores > 0 {
		s.Values[0] = min(100, 100*load/cores)
	}
	if mem > 0 {
		s.Values[1] = min(100, 100*float64(used)/float64(mem))
	}
	if gpus > 0 {
		s.Values[2] = 100 * float64(held) / float64(gpus)
	}
	for _, d := range st.Waiting {
		if d.Kind == KindSession {
			s.Values[4]++
		} else {
			s.Values[3]++
		}
	}
	if ready > 0 {
		s.Values[5] = float64(sessions) / float64(ready)
	}
	return s
}

// Policy returns the pool's scaling policy: its own, or for a pool without
// one, a fixed size of Count nodes (which sheds its highest-numbered idle
// nodes first when Count is lowered).
func Policy(p *dspool.Pool) *dspool.Autoscale {
	if p.Autoscale != nil {
		return p.Autoscale
	}
	return &dspool.Autoscale{Min: p.Count, Max: p.Count, IdleTimeout: dspool.Duration(dspool.DefaultIdleTimeout),
		BootTimeout: dspool.Duration(dspool.DefaultBootTimeout), WaitTimeout: dspool.Duration(dspool.DefaultWaitTimeout),
		ScaleInPolicy: dspool.ScaleInNewest}
}

// Bounds returns the pool's min and max at now, with its active schedules
// applied, and the reason for the floor when a schedule raised it.
func Bounds(a *dspool.Autoscale, now time.Time) (lo, hi int, why string) {
	lo, hi = a.Min, a.Max
	why = fmt.Sprintf("min is %d", a.Min)
	for i := range a.Schedules {
		s := &a.Schedules[i]
		if !s.Active(now) {
			continue
		}
		if s.Min > lo {
			lo = s.Min
			why = fmt.Sprintf("the schedule %s %s-%s %s keeps at least %d", days(s.Days), s.From, s.To, s.Timezone, s.Min)
		}
		if s.Max != nil && *s.Max < hi {
			hi = *s.Max
		}
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi, why
}

func days(d []string) string {
	j := strings.Join(d, ",")
	switch j {
	case "mon,tue,wed,thu,fri":
		return "weekdays"
	case "sat,sun":
		return "weekends"
	case "mon,tue,wed,thu,fri,sat,sun":
		return "daily"
	}
	return j
}

// bin is room that waiting work can be packed into.
type bin struct {
	cpus dspool.MilliCPU
	mem  dspool.Bytes
	gpus int
	node int // index into State.Nodes, or -1 for a new node
}

func (b *bin) take(d *Demand) bool {
	if d.CPUs > b.cpus || d.Memory > b.mem || d.GPUs > b.gpus {
		return false
	}
	b.cpus -= d.CPUs
	b.mem -= d.Memory
	b.gpus -= d.GPUs
	return true
}

// Decide returns what the pool in st should do at now.
func Decide(st *State, now time.Time) Decision {
	pol := Policy(st.Pool)
	lo, hi, floorWhy := Bounds(pol, now)
	if st.Pool.Autoscale == nil {
		floorWhy = fmt.Sprintf("pool %s keeps %s", st.Pool.Name, plural(st.Pool.Count, "node", "nodes"))
	}
	d := Decision{Min: lo, Max: hi}
	size := st.Pool.Node

	// 1. Failed nodes and nodes that never became ready.
	gone := make([]bool, len(st.Nodes))
	live := 0
	for i := range st.Nodes {
		n := &st.Nodes[i]
		switch {
		case n.State == dspool.NodeGone:
			gone[i] = true
			continue
		case n.State == dspool.NodeFailed && n.Idle():
			d.Remove = append(d.Remove, Removal{n.ID, n.Name, "its setup failed (`dspool node show " + n.Name + "` has the output)"})
			gone[i] = true
			continue
		case n.State == dspool.NodeProvisioning && n.Idle() && now.Sub(n.Created) >= time.Duration(pol.BootTimeout):
			d.Remove = append(d.Remove, Removal{n.ID, n.Name, fmt.Sprintf("not ready %s after it was added (boot_timeout)", time.Duration(pol.BootTimeout))})
			gone[i] = true
			continue
		}
		live++
	}

	// 2. Pack waiting work, largest first, into the room there is, then
	// into new nodes.
	order := make([]int, len(st.Waiting))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return largestFirst(&st.Waiting[a], &st.Waiting[b]) })
	var bins []bin
	for i := range st.Nodes {
		n := &st.Nodes[i]
		switch {
		case gone[i]:
		case n.State == dspool.NodeReady:
			bins = append(bins, bin{n.FreeCPUs, n.FreeMem, n.FreeGPUs, i})
		case n.State == dspool.NodeProvisioning:
			bins = append(bins, bin{size.CPUs, size.Memory, size.GPUs, i})
		}
	}
	// Existing room is filled in an order of its own, not the caller's, so
	// that which idle node work lands on (and so which one may go) does not
	// depend on how the nodes were listed.
	slices.SortFunc(bins, func(a, b bin) int {
		x, y := &st.Nodes[a.node], &st.Nodes[b.node]
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.ID, y.ID))
	})
	existing := len(bins)
	used := make([]bool, len(st.Nodes)) // nodes that waiting work will use
	var unplaced []*Demand              // work that needs a new node
	tooBig := 0                         // work no node of the pool can hold
	for _, i := range order {
		w := &st.Waiting[i]
		if w.CPUs > size.CPUs || w.Memory > size.Memory || w.GPUs > size.GPUs {
			tooBig++ // refused at submit, unless the pool's nodes shrank since
			continue
		}
		b := 0
		for b < len(bins) && !bins[b].take(w) {
			b++
		}
		if b == len(bins) {
			bins = append(bins, bin{size.CPUs, size.Memory, size.GPUs, -1})
			bins[b].take(w)
		}
		if n := bins[b].node; n >= 0 {
			used[n] = true
		} else {
			unplaced = append(unplaced, w)
		}
	}
	need := len(bins) - existing
	add := need
	if need > 0 {
		d.AddReason = describeWaiting(unplaced, st, gone)
	}

	// 3. Floor, warm spares, rules.
	if live+add < lo {
		add = lo - live
		if d.AddReason == "" {
			d.AddReason = floorWhy
		}
	}
	spares := 0
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if !gone[i] && !used[i] && n.Idle() && (n.State == dspool.NodeReady || n.State == dspool.NodeProvisioning) {
			spares++
		}
	}
	if short := pol.WarmSpares - spares - (add - need); short > 0 {
		add += short
		if d.AddReason == "" {
			d.AddReason = fmt.Sprintf("warm_spares keeps %s ready, and %s", plural(pol.WarmSpares, "idle node", "idle nodes"),
				plural(spares, "is idle", "are idle"))
		}
	}
	var ruleIn []int
	for i := range pol.Rules {
		r := &pol.Rules[i]
		if i < len(st.Fired) && !st.Fired[i].IsZero() && now.Sub(st.Fired[i]) < time.Duration(r.Cooldown) {
			continue
		}
		v, ok := mean(st.History, metricIndex(r.Metric), now, time.Duration(r.Window))
		if !ok || !r.Holds(v) {
			continue
		}
		if r.Action == dspool.ScaleOut {
			if live+max(add, r.Step) > hi && live+add >= hi {
				continue // at max: the rule cannot act, and its cooldown does not start
			}
			d.Fired = append(d.Fired, i)
			if r.Step > add {
				add = r.Step
				d.AddReason = fmt.Sprintf("%s (it is %s)", r.String(), num(v))
			}
		} else {
			ruleIn = append(ruleIn, i)
		}
	}

	// 4. Cap.
	if live+add > hi {
		add = max(0, hi-live)
	}
	if add < need && st.Pool.Autoscale == nil {
		d.Waiting = fmt.Sprintf("pool %s keeps %s, and none has room now", st.Pool.Name, plural(hi, "node", "nodes"))
	} else if add < need {
		d.Waiting = fmt.Sprintf("pool %s is at its max of %s", st.Pool.Name, plural(hi, "node", "nodes"))
		if add > 0 {
			d.AddReason += fmt.Sprintf(" (max %d: no more)", hi)
		}
	}
	if add > 0 && now.Before(st.Backoff) {
		d.Waiting = fmt.Sprintf("adding nodes to pool %s failed (%s); trying again in %s", st.Pool.Name, st.BackoffReason,
			st.Backoff.Sub(now).Round(time.Second))
		add = 0
		d.Fired = nil // the scale-out rules did not act: their cooldown does not start
	}
	if tooBig > 0 && d.Waiting == "" {
		what := plural(tooBig, "waiting job or session needs", "waiting jobs or sessions need")
		d.Waiting = fmt.Sprintf("%s more than a node of pool %s has (%s %s, %s, %s): it can run only once the pool's nodes are made bigger",
			what, st.Pool.Name, size.CPUs, cpuWord(size.CPUs), size.Memory, plural(size.GPUs, "gpu", "gpus"))
	}
	d.Add = add
	if add > 0 {
		return d
	}

	// 5. Scale in: idle nodes that no waiting work needs.
	var idle []int
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if gone[i] || used[i] || !n.Idle() {
			continue
		}
		if n.State == dspool.NodeReady || n.State == dspool.NodeLost || n.State == dspool.NodeDraining {
			idle = append(idle, i)
		}
	}
	if len(idle) == 0 {
		return d
	}
	slices.SortStableFunc(idle, func(a, b int) int {
		x, y := &st.Nodes[a], &st.Nodes[b]
		if st.Pool.Autoscale == nil {
			// A fixed pool sheds its highest-numbered nodes (pool-3 before
			// pool-2), so that its names stay pool-1..pool-count whatever
			// order its nodes joined in.
			if c := cmp.Compare(len(y.Name), len(x.Name)); c != 0 {
				return c
			}
			return cmp.Compare(y.Name, x.Name)
		}
		var c int
		switch pol.ScaleInPolicy {
		case dspool.ScaleInOldest:
			c = x.Created.Compare(y.Created)
		case dspool.ScaleInNewest:
			c = y.Created.Compare(x.Created)
		default:
			c = x.IdleSince.Compare(y.IdleSince)
		}
		if c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	// Removable: above the floor, and leaving the warm spares. Only idle
	// ready nodes are spares (as in step 3): a lost or draining node kept
	// in place of a ready one would leave the pool short of them.
	room, spare := live-lo, -pol.WarmSpares
	for _, i := range idle {
		if st.Nodes[i].State == dspool.NodeReady {
			spare++
		}
	}
	taken := map[int]bool{}
	remove := func(i int, why string) {
		n := &st.Nodes[i]
		taken[i] = true
		room--
		if n.State == dspool.NodeReady {
			spare--
		}
		d.Remove = append(d.Remove, Removal{n.ID, n.Name, why})
	}
	for _, i := range idle {
		if room <= 0 {
			break
		}
		n := &st.Nodes[i]
		if n.State == dspool.NodeReady && spare <= 0 {
			continue
		}
		switch {
		case st.Pool.Autoscale == nil:
			remove(i, fmt.Sprintf("pool %s keeps %s", st.Pool.Name, plural(st.Pool.Count, "node", "nodes")))
		case n.State == dspool.NodeDraining:
			remove(i, "it was drained")
		case now.Sub(n.IdleSince) >= time.Duration(pol.IdleTimeout):
			what := "idle"
			if n.State == dspool.NodeLost {
				what = "lost"
			}
			remove(i, fmt.Sprintf("%s for %s (idle_timeout %s)", what, now.Sub(n.IdleSince).Round(time.Second), time.Duration(pol.IdleTimeout)))
		}
	}
	for _, ri := range ruleIn {
		r := &pol.Rules[ri]
		v, _ := mean(st.History, metricIndex(r.Metric), now, time.Duration(r.Window))
		acted := false
		for step, k := 0, 0; step < r.Step && k < len(idle) && room > 0 && spare > 0; k++ {
			if i := idle[k]; !taken[i] && st.Nodes[i].State == dspool.NodeReady {
				remove(i, fmt.Sprintf("%s (it is %s)", r.String(), num(v)))
				step++
				acted = true
			}
		}
		if acted {
			d.Fired = append(d.Fired, ri)
		}
	}
	return d
}
