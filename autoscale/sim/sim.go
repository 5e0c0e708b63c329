// Package sim replays a workload trace through the autoscaler in virtual
// time, to see what a pool's policy costs and how long work waits, before
// anyone pays for it (`dspool simulate`).
//
// It must never decide anything itself: nodes are added and removed only as
// autoscale.Decide says, jobs are placed only by scheduler.Plan and sessions
// routed only by scheduler.Route, the functions the control plane calls. The
// simulator supplies what the control plane's loops would (node boots,
// finished work, the metric history, rule cooldowns) and a virtual clock;
// it reads no clock and does no I/O beyond the reader it is given.
//
// The clock steps whole seconds. Decide is evaluated at every second at
// which its answer could differ from the last one: when work arrives or
// ends, a node becomes ready, a timer runs out (idle_timeout, boot_timeout,
// wait_timeout, a cooldown, a schedule's start or end) or a rule's mean
// crosses its threshold, and the second after any decision that acted.
// Options.EveryTick evaluates it at every second instead; the two agree
// (a test checks this on a night of the shipped week), and the first is
// ~50x faster on the whole week (0.2 s against 10 s).
package sim

//go:generate sh -c "go run ./gen > testdata/team-week.csv"

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// DefaultBootTime is how long a new node takes to become ready when
// Options.BootTime is zero: a typical cloud VM with a setup script.
const DefaultBootTime = 60 * time.Second

// Routing of sessions, to override the pools' own placement
// (sessions.placement) in a what-if.
const (
	// RouteSpread sends a session to the least-loaded node with room.
	RouteSpread = dspool.PlacementSpread
	// RoutePack sends a session to the most-used node with room.
	RoutePack = dspool.PlacementPack
)

// Options tune a simulation. The zero value is the defaults.
type Options struct {
	// BootTime is from a node being asked for to its being ready
	// (DefaultBootTime when zero).
	BootTime time.Duration
	// EveryTick evaluates Decide at every second rather than only when
	// its answer could change. Slow; for checking the faster way.
	EveryTick bool
	// Routing, when set (RouteSpread or RoutePack), overrides every pool's
	// sessions.placement.
	Routing string
}

func (o Options) withDefaults() (Options, error) {
	if o.BootTime == 0 {
		o.BootTime = DefaultBootTime
	}
	if o.BootTime < time.Second || o.BootTime%time.Second != 0 || o.BootTime > 24*time.Hour {
		return o, dspool.Invalid("boot-time", "%s: give whole seconds from 1s to 24h", o.BootTime)
	}
	switch o.Routing {
	case "", RouteSpread, RoutePack:
	default:
		return o, dspool.Invalid("routing", "%q is not a routing: use spread or pack", o.Routing)
	}
	return o, nil
}

// Names of the policies a Result compares.
const (
	PolicyOwn          = "pools file"
	PolicyAlwaysOn     = "always-on at max"
	PolicyCPUThreshold = "cpu threshold"
	PolicyLowerBound   = "lower bound"
)

// Result is what a simulation found: for each policy, in the order
// PolicyOwn, PolicyAlwaysOn, PolicyCPUThreshold, PolicyLowerBound, its
// figures for each pool and in total.
type Result struct {
	Start    time.Time       `json:"start"`
	End      time.Time       `json:"end"` // when the trace's work would be done if none of it waited
	BootTime dspool.Duration `json:"boot_time"`
	Routing  string          `json:"routing,omitempty"` // set when it overrode the pools' placement
	Jobs     int             `json:"jobs"`
	Sessions int             `json:"sessions"`
	Policies []PolicyResult  `json:"policies"`
}

// Policy returns the result of the named policy, or nil.
func (r *Result) Policy(name string) *PolicyResult {
	for i := range r.Policies {
		if r.Policies[i].Name == name {
			return &r.Policies[i]
		}
	}
	return nil
}

// PolicyResult is one policy's figures.
type PolicyResult struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Total       Figures   `json:"total"`
	Pools       []Figures `json:"pools"`
}

// Pool returns the figures of the named pool, or nil.
func (p *PolicyResult) Pool(name string) *Figures {
	for i := range p.Pools {
		if p.Pools[i].Pool == name {
			return &p.Pools[i]
		}
	}
	return nil
}

// Figures are a policy's figures for one pool or for all of them.
type Figures struct {
	Pool      string  `json:"pool,omitempty"`
	NodeHours float64 `json:"node_hours"`
	// VsLowerBound is NodeHours over the lower bound's (0 when that is 0).
	VsLowerBound float64 `json:"vs_lower_bound"`
	Cost         float64 `json:"cost"`
	NodesAdded   int     `json:"nodes_added"`
	// PeakNodes is the most nodes at once; in total, the sum of the pools'.
	PeakNodes int   `json:"peak_nodes"`
	Jobs      Waits `json:"jobs"`
	Sessions  Waits `json:"sessions"`
	// SimEnd is when the run stopped: the work done and the pool back at
	// its floor. Node-hours count from Result.Start to here.
	SimEnd time.Time `json:"sim_end,omitzero"`
	waits  [2][]int64
}

// Waits are how long work waited from arriving to starting.
type Waits struct {
	Arrived int `json:"arrived"`
	Served  int `json:"served"`
	// GaveUp counts sessions that waited past the pool's wait_timeout;
	// their wait (the timeout) is in the mean and p95.
	GaveUp int     `json:"gave_up"`
	MeanS  float64 `json:"mean_s"`
	P95S   float64 `json:"p95_s"`
	MaxS   float64 `json:"max_s"`
}

func summarize(arrived int, waits []int64, gaveUp int) Waits {
	w := Waits{Arrived: arrived, Served: len(waits) - gaveUp, GaveUp: gaveUp}
	if len(waits) == 0 {
		return w
	}
	s := slices.Clone(waits)
	slices.Sort(s)
	var sum int64
	for _, x := range s {
		sum += x
	}
	w.MeanS = float64(sum) / float64(len(s))
	w.P95S = float64(s[rank(len(s), 0.95)])
	w.MaxS = float64(s[len(s)-1])
	return w
}

// rank is the nearest-rank index of quantile q in n sorted values.
func rank(n int, q float64) int {
	return max(0, int(math.Ceil(q*float64(n)))-1)
}

// Run simulates the trace on the pools under each policy.
func Run(t *Trace, pools []*dspool.Pool, opt Options) (*Result, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	byPool := map[string][]*Arrival{}
	known := map[string]*dspool.Pool{}
	for _, p := range pools {
		known[p.Name] = p
	}
	res := &Result{Start: t.Start, End: t.End().In(t.Start.Location()), BootTime: dspool.Duration(opt.BootTime), Routing: opt.Routing}
	for i := range t.Arrivals {
		a := &t.Arrivals[i]
		if err := check(i, a, known[a.Pool]); err != nil {
			return nil, err
		}
		byPool[a.Pool] = append(byPool[a.Pool], a)
		if a.Kind == KindJob {
			res.Jobs++
		} else {
			res.Sessions++
		}
	}
	lower := lowerBound(pools, byPool)
	for _, v := range variants() {
		pr := PolicyResult{Name: v.name, Description: v.description}
		for _, p := range pools {
			s := newPoolSim(v.pool(p), v.hideWaiting && p.Autoscale != nil, res.Start, res.End, byPool[p.Name], opt)
			f, err := s.run()
			if err != nil {
				return nil, fmt.Errorf("simulate pool %s, policy %s: %w", p.Name, v.name, err)
			}
			pr.Pools = append(pr.Pools, f)
		}
		res.Policies = append(res.Policies, pr)
	}
	res.Policies = append(res.Policies, lower)
	for i := range res.Policies {
		total(&res.Policies[i], pools, &lower)
	}
	return res, nil
}

// check refuses an arrival (the i-th) that no pool could ever serve.
func check(i int, a *Arrival, p *dspool.Pool) error {
	fail := func(field, format string, args ...any) error {
		if a.Line == 0 {
			return dspool.Invalid(fmt.Sprintf("arrival %d: %s", i+1, field), format, args...)
		}
		return lineErr(a.Line, field, format, args...)
	}
	switch {
	case p == nil:
		return fail("pool", "there is no pool %s in the pools file", a.Pool)
	case a.Kind == KindSession && !p.Takes(dspool.WorkInteractive):
		return fail("pool", "pool %s does not take interactive work (sessions)", a.Pool)
	case a.Kind == KindJob && !p.Takes(dspool.WorkBatch):
		return fail("pool", "pool %s does not take batch work (jobs)", a.Pool)
	case a.Kind == KindJob:
		if err := p.Fits(a.CPUs, a.Memory, a.GPUs); err != nil {
			e := err.(*dspool.Error)
			return fail(e.Field, "%s", e.Message)
		}
	}
	return nil
}

// total fills p.Total from its pools, and the ratios to the lower bound.
func total(p *PolicyResult, pools []*dspool.Pool, lower *PolicyResult) {
	t := Figures{}
	var arrived [2]int
	var gaveUp int
	for i := range p.Pools {
		f := &p.Pools[i]
		t.NodeHours += f.NodeHours
		t.Cost += f.Cost
		t.NodesAdded += f.NodesAdded
		t.PeakNodes += f.PeakNodes
		t.waits[0] = append(t.waits[0], f.waits[0]...)
		t.waits[1] = append(t.waits[1], f.waits[1]...)
		arrived[0] += f.Jobs.Arrived
		arrived[1] += f.Sessions.Arrived
		gaveUp += f.Sessions.GaveUp
		if f.SimEnd.After(t.SimEnd) {
			t.SimEnd = f.SimEnd
		}
		if lb := lower.Pools[i].NodeHours; lb > 0 {
			f.VsLowerBound = f.NodeHours / lb
		}
	}
	t.Jobs = summarize(arrived[0], t.waits[0], 0)
	t.Sessions = summarize(arrived[1], t.waits[1], gaveUp)
	var lb float64
	for i := range lower.Pools {
		lb += lower.Pools[i].NodeHours
	}
	if lb > 0 {
		t.VsLowerBound = t.NodeHours / lb
	}
	p.Total = t
}
