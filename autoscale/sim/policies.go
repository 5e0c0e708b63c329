package sim

import (
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// The scale-set-style rules of PolicyCPUThreshold.
var cpuRules = []dspool.ScaleRule{
	{Metric: dspool.MetricCPU, Operator: ">", Threshold: 70, Window: dspool.Duration(5 * time.Minute),
		Action: dspool.ScaleOut, Step: 1, Cooldown: dspool.Duration(5 * time.Minute)},
	{Metric: dspool.MetricCPU, Operator: "<", Threshold: 30, Window: dspool.Duration(10 * time.Minute),
		Action: dspool.ScaleIn, Step: 1, Cooldown: dspool.Duration(10 * time.Minute)},
}

// noIdleTimeout is the longest idle_timeout a pool may have: in the
// scale-set-style policy only the scale-in rule removes nodes.
const noIdleTimeout = 7 * 24 * time.Hour

type variant struct {
	name, description string
	// pool returns the pool with this policy in place of its own.
	pool func(*dspool.Pool) *dspool.Pool
	// hideWaiting leaves waiting work out of what Decide packs (State.Waiting
	// is empty), so that only rules add nodes; the metrics still count it.
	hideWaiting bool
}

func variants() []variant {
	return []variant{
		{name: PolicyOwn, description: "each pool's autoscale policy as the pools file gives it",
			pool: func(p *dspool.Pool) *dspool.Pool { return p }},
		{name: PolicyAlwaysOn, description: "each pool keeps its max nodes all the time (min = max, no rules, no scale-in)",
			pool: alwaysOn},
		{name: PolicyCPUThreshold, description: "scale-set style: +1 node when cpu_percent > 70 over 5m (cooldown 5m), -1 idle node " +
			"when cpu_percent < 30 over 10m (cooldown 10m), no idle_timeout, no schedules or warm spares, min at least 1, " +
			"and waiting work hidden from Decide's packing (it adds no node for it)",
			pool: cpuThreshold, hideWaiting: true},
	}
}

func alwaysOn(p *dspool.Pool) *dspool.Pool {
	pol := autoscale.Policy(p)
	q := *p
	q.Autoscale = &dspool.Autoscale{Min: pol.Max, Max: pol.Max, IdleTimeout: pol.IdleTimeout, BootTimeout: pol.BootTimeout,
		WaitTimeout: pol.WaitTimeout, ScaleInPolicy: pol.ScaleInPolicy}
	if p.Autoscale == nil {
		q.Autoscale = nil // a fixed pool is always on already
	}
	return &q
}

func cpuThreshold(p *dspool.Pool) *dspool.Pool {
	if p.Autoscale == nil {
		return p
	}
	pol := p.Autoscale
	q := *p
	// min 0 would never start: cpu_percent is measured on ready nodes, and
	// a pool without any reads 0.
	q.Autoscale = &dspool.Autoscale{Min: max(1, pol.Min), Max: pol.Max, IdleTimeout: dspool.Duration(noIdleTimeout),
		BootTimeout: pol.BootTimeout, WaitTimeout: pol.WaitTimeout, ScaleInPolicy: pol.ScaleInPolicy,
		Rules: slices.Clone(cpuRules)}
	return &q
}

// lowerBound is the clairvoyant bound on node-hours: at every instant, the
// fewest nodes that could hold the work running then, had each piece of it
// started the moment it arrived and had it packed perfectly (per dimension
// ceil(sum / node size), the largest over dimensions), with no boot time.
// A user's overlapping sessions in a pool share one reservation, as they do
// on a node.
func lowerBound(pools []*dspool.Pool, byPool map[string][]*Arrival) PolicyResult {
	pr := PolicyResult{Name: PolicyLowerBound, Description: "clairvoyant: the fewest nodes that hold the work running at each instant, " +
		"each piece started on arrival and packed perfectly (per dimension ceil(sum / node size)), no boot time"}
	for _, p := range pools {
		pr.Pools = append(pr.Pools, lowerBoundOf(p, byPool[p.Name]))
	}
	return pr
}

func lowerBoundOf(p *dspool.Pool, arrivals []*Arrival) Figures {
	type change struct {
		at   time.Time
		cpus dspool.MilliCPU
		mem  dspool.Bytes
		gpus int
	}
	var ch []change
	spec := p.SessionSettings()
	open := map[string]time.Time{} // the end of a user's merged session interval
	f := Figures{Pool: p.Name, VsLowerBound: 1}
	for _, a := range arrivals {
		if a.Kind == KindJob {
			ch = append(ch, change{a.At, a.CPUs, a.Memory, a.GPUs}, change{a.At.Add(a.Duration), -a.CPUs, -a.Memory, -a.GPUs})
			f.waits[0] = append(f.waits[0], 0)
			continue
		}
		f.waits[1] = append(f.waits[1], 0)
		end := a.At.Add(a.Duration)
		if last, ok := open[a.User]; ok && !a.At.After(last) {
			// Overlaps the user's interval: move its end.
			if end.After(last) {
				ch = append(ch, change{last, spec.CPUs, spec.Memory, 0}, change{end, -spec.CPUs, -spec.Memory, 0})
				open[a.User] = end
			}
			continue
		}
		ch = append(ch, change{a.At, spec.CPUs, spec.Memory, 0}, change{end, -spec.CPUs, -spec.Memory, 0})
		open[a.User] = end
	}
	slices.SortStableFunc(ch, func(x, y change) int { return x.at.Compare(y.at) })
	var cpus dspool.MilliCPU
	var mem dspool.Bytes
	var gpus int
	var seconds int64
	for i, c := range ch {
		cpus, mem, gpus = cpus+c.cpus, mem+c.mem, gpus+c.gpus
		if i+1 < len(ch) && ch[i+1].at.After(c.at) {
			n := int64(need(p.Node, cpus, mem, gpus))
			seconds += n * int64(ch[i+1].at.Sub(c.at)/time.Second)
			f.PeakNodes = max(f.PeakNodes, int(n))
		}
	}
	f.NodeHours = float64(seconds) / 3600
	f.Cost = f.NodeHours * p.PricePerNodeHour
	f.Jobs = summarize(len(f.waits[0]), f.waits[0], 0)
	f.Sessions = summarize(len(f.waits[1]), f.waits[1], 0)
	return f
}

// need is how many nodes of size hold cpus, mem and gpus, packed perfectly.
func need(size dspool.NodeSize, cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) int {
	n := ceilDiv(int64(cpus), int64(size.CPUs))
	n = max(n, ceilDiv(int64(mem), int64(size.Memory)))
	if size.GPUs > 0 {
		n = max(n, ceilDiv(int64(gpus), int64(size.GPUs)))
	}
	return int(n)
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
