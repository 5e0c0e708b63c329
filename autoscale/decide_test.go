package autoscale_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Lisbon wherever the tests run

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// t0 is a Monday noon; most cases decide at it.
var t0 = time.Date(2025, time.March, 3, 12, 0, 0, 0, time.UTC)

// size is every test pool's node: 8 cpus, 32GiB, 1 gpu.
var size = dspool.NodeSize{CPUs: 8000, Memory: 32 << 30, GPUs: 1}

const gib = dspool.Bytes(1 << 30)

// scaling returns a normalized pool named gpu that takes batch work with
// policy a.
func scaling(a dspool.Autoscale) *dspool.Pool {
	p := &dspool.Pool{Name: "gpu", Node: size, Work: []dspool.Work{dspool.WorkBatch}, Autoscale: &a}
	if err := p.Normalize(""); err != nil {
		panic(err)
	}
	return p
}

// fixed returns a normalized pool of count nodes without autoscale.
func fixed(count int) *dspool.Pool {
	p := &dspool.Pool{Name: "gpu", Node: size, Work: []dspool.Work{dspool.WorkBatch}, Count: count}
	if err := p.Normalize(""); err != nil {
		panic(err)
	}
	return p
}

// node returns a node created an hour ago, idle for a minute, all free.
func node(name string, state dspool.NodeState, opts ...func(*autoscale.Node)) autoscale.Node {
	n := autoscale.Node{ID: "id-" + name, Name: name, State: state, Created: t0.Add(-time.Hour), IdleSince: t0.Add(-time.Minute),
		FreeCPUs: size.CPUs, FreeMem: size.Memory, FreeGPUs: size.GPUs}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func ready(name string, opts ...func(*autoscale.Node)) autoscale.Node {
	return node(name, dspool.NodeReady, opts...)
}

// provisioning returns a node added a minute ago.
func provisioning(name string, opts ...func(*autoscale.Node)) autoscale.Node {
	return node(name, dspool.NodeProvisioning, append([]func(*autoscale.Node){created(time.Minute), idleFor(time.Minute)}, opts...)...)
}

// busy gives the node one attempt holding its gpu and 2 cpus.
func busy(n *autoscale.Node) {
	n.Attempts, n.FreeGPUs, n.FreeCPUs, n.FreeMem = 1, 0, size.CPUs-2000, size.Memory-4*gib
}

// full gives the node one attempt holding all of it.
func full(n *autoscale.Node) { n.Attempts, n.FreeGPUs, n.FreeCPUs, n.FreeMem = 1, 0, 0, 0 }

func sessions(k int) func(*autoscale.Node) { return func(n *autoscale.Node) { n.Sessions = k } }

func idleFor(d time.Duration) func(*autoscale.Node) {
	return func(n *autoscale.Node) { n.IdleSince = t0.Add(-d) }
}

func created(d time.Duration) func(*autoscale.Node) {
	return func(n *autoscale.Node) { n.Created = t0.Add(-d) }
}

func freeCPUs(c dspool.MilliCPU) func(*autoscale.Node) {
	return func(n *autoscale.Node) { n.FreeCPUs = c }
}

func job(cpus dspool.MilliCPU, mem dspool.Bytes, gpus int) autoscale.Demand {
	return autoscale.Demand{Kind: autoscale.KindJob, CPUs: cpus, Memory: mem, GPUs: gpus, Since: t0.Add(-time.Minute)}
}

func session(cpus dspool.MilliCPU, mem dspool.Bytes) autoscale.Demand {
	return autoscale.Demand{Kind: autoscale.KindSession, CPUs: cpus, Memory: mem, Since: t0.Add(-time.Second)}
}

func repeat[T any](k int, v T) []T {
	s := make([]T, k)
	for i := range s {
		s[i] = v
	}
	return s
}

func metric(name string) int {
	i := slices.Index(autoscale.Metrics[:], name)
	if i < 0 {
		panic("no metric " + name)
	}
	return i
}

// flat returns samples of metric m every 30s over the span ending at t0,
// all equal to v.
func flat(m string, v float64, span time.Duration) []autoscale.Sample {
	return series(m, span, func(time.Time) float64 { return v })
}

// series returns samples of metric m every 30s from t0-span to t0.
func series(m string, span time.Duration, v func(at time.Time) float64) []autoscale.Sample {
	var h []autoscale.Sample
	for at := t0.Add(-span); !at.After(t0); at = at.Add(30 * time.Second) {
		s := autoscale.Sample{At: at}
		s.Values[metric(m)] = v(at)
		h = append(h, s)
	}
	return h
}

func rule(m, op string, threshold float64, action string, step int) dspool.ScaleRule {
	return dspool.ScaleRule{Metric: m, Operator: op, Threshold: threshold, Action: action, Step: step}
}

func ptr[T any](v T) *T { return &v }

// want is what a case expects of the decision. Reason and waiting are
// substrings; an empty waiting means Decision.Waiting must be empty.
type want struct {
	add       int
	remove    []string // names, any order
	removeWhy string   // a substring of every removal's reason
	fired     []int
	reason    string
	waiting   string
	min, max  *int
}

func (w want) check(t *testing.T, d autoscale.Decision) {
	t.Helper()
	if d.Add != w.add {
		t.Errorf("Add = %d (%s), want %d", d.Add, d.AddReason, w.add)
	}
	var got []string
	for _, r := range d.Remove {
		got = append(got, r.Name)
		if !strings.Contains(r.Reason, w.removeWhy) {
			t.Errorf("removal of %s says %q, want it to mention %q", r.Name, r.Reason, w.removeWhy)
		}
	}
	slices.Sort(got)
	wantRemove := slices.Clone(w.remove)
	slices.Sort(wantRemove)
	if !slices.Equal(got, wantRemove) {
		t.Errorf("Remove = %v (%+v), want %v", got, d.Remove, wantRemove)
	}
	if !slices.Equal(d.Fired, w.fired) {
		t.Errorf("Fired = %v, want %v", d.Fired, w.fired)
	}
	if !strings.Contains(d.AddReason, w.reason) {
		t.Errorf("AddReason = %q, want it to mention %q", d.AddReason, w.reason)
	}
	if w.waiting == "" && d.Waiting != "" || !strings.Contains(d.Waiting, w.waiting) {
		t.Errorf("Waiting = %q, want %q", d.Waiting, w.waiting)
	}
	if w.min != nil && d.Min != *w.min {
		t.Errorf("Min = %d, want %d", d.Min, *w.min)
	}
	if w.max != nil && d.Max != *w.max {
		t.Errorf("Max = %d, want %d", d.Max, *w.max)
	}
}

type decideCase struct {
	name string
	st   autoscale.State
	now  time.Time // zero: t0
	want want
}

func runCases(t *testing.T, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			tt.want.check(t, autoscale.Decide(&tt.st, now))
		})
	}
}

func TestDecideDemand(t *testing.T) {
	elastic := scaling(dspool.Autoscale{Max: 10})
	runCases(t, []decideCase{
		{name: "one queued job scales an empty pool from zero",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{job(2000, 4*gib, 0)}},
			want: want{add: 1, reason: "1 queued job needs 2 cpus and 4GiB and the pool has no node"}},
		{name: "five 1-gpu jobs on busy 1-gpu nodes add five",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", busy), ready("b", busy)},
				Waiting: repeat(5, job(1000, gib, 1))},
			want: want{add: 5, reason: "5 queued jobs need 1 gpu each and no node has one free"}},
		{name: "jobs wanting more gpus than there are free say them",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", busy)},
				Waiting: []autoscale.Demand{job(1000, gib, 1), job(2000, gib, 1)}},
			want: want{add: 2, reason: "no node has them free"}},
		{name: "max caps what demand adds",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 3}), Nodes: []autoscale.Node{ready("a", busy)},
				Waiting: repeat(5, job(1000, gib, 1))},
			want: want{add: 2, reason: "5 queued jobs", waiting: "pool gpu is at its max of 3 nodes", max: ptr(3)}},
		{name: "a pool at its max adds nothing and says why the work waits",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 2}), Nodes: []autoscale.Node{ready("a", busy), ready("b", busy)},
				Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 0, waiting: "at its max of 2 nodes"}},
		{name: "jobs that fit the free room of ready nodes add nothing",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a"), ready("b")},
				Waiting: repeat(2, job(4000, 8*gib, 1))},
			want: want{add: 0}},
		{name: "cpu jobs fill the free room of several nodes before a new one",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", busy, freeCPUs(3000)), ready("b", busy, freeCPUs(2000))},
				Waiting: repeat(3, job(1500, gib, 0))},
			want: want{add: 0}},
		{name: "cpu jobs beyond the free room add what they need",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", busy, freeCPUs(3000)), ready("b", busy, freeCPUs(2000))},
				Waiting: repeat(8, job(1500, gib, 0))},
			// 3 fit a and b; 5 more fit in one 8-cpu node.
			want: want{add: 1, reason: "5 queued jobs need 1.5 cpus and 1GiB each and no node has room"}},
		{name: "largest work is packed first",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{job(2000, gib, 0), job(2000, gib, 0), job(6000, gib, 0), job(6000, gib, 0)}},
			want: want{add: 2}},
		{name: "a provisioning node absorbs the work it fits",
			st:   autoscale.State{Pool: elastic, Nodes: []autoscale.Node{provisioning("a")}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 0}},
		{name: "a provisioning node absorbs only what fits it",
			st:   autoscale.State{Pool: elastic, Nodes: []autoscale.Node{provisioning("a")}, Waiting: repeat(3, job(1000, gib, 1))},
			want: want{add: 2, reason: "2 queued jobs need 1 gpu each"}},
		{name: "waiting sessions add nodes like jobs",
			st: autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", full)},
				Waiting: repeat(2, session(1000, 2*gib))},
			want: want{add: 1, reason: "2 sessions wait for 1 cpu and 2GiB each and no node has room"}},
		{name: "one waiting session on an empty pool",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{session(1000, 2*gib)}},
			want: want{add: 1, reason: "1 session waits for 1 cpu and 2GiB and the pool has no node"}},
		{name: "sessions and jobs share new nodes",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{session(1000, 2*gib), job(4000, 8*gib, 1), session(1000, 2*gib)}},
			want: want{add: 1, reason: "1 queued job needs 1 gpu, 2 sessions wait for 1 cpu and 2GiB each"}},
		{name: "sessions fit the free room of a busy node",
			st:   autoscale.State{Pool: elastic, Nodes: []autoscale.Node{ready("a", busy)}, Waiting: repeat(3, session(1000, 2*gib))},
			want: want{add: 0}},
		{name: "work that can never fit the node size adds nothing",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{job(1000, gib, 2), job(9000, gib, 0), job(1000, 64*gib, 0)}},
			want: want{add: 0, waiting: "3 waiting jobs or sessions need more than a node of pool gpu has"}},
		{name: "work too big for the node does not hold back work that fits",
			st:   autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{job(1000, gib, 2), job(1000, gib, 1)}},
			want: want{add: 1, reason: "1 queued job needs 1 gpu and the pool has no node", waiting: "1 waiting job or session needs more than a node"}},
		{name: "more than three kinds of work are summed up",
			st: autoscale.State{Pool: elastic, Waiting: []autoscale.Demand{job(1000, gib, 0), job(2000, gib, 0), job(3000, gib, 0),
				job(4000, gib, 0), job(5000, gib, 0)}},
			want: want{add: 2, reason: "2 more kinds of work wait"}},
		{name: "lost nodes are no room and not 'a node'",
			st:   autoscale.State{Pool: elastic, Nodes: []autoscale.Node{node("a", dspool.NodeLost)}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 1, reason: "the pool has no node"}},
	})
}

func TestDecideBounds(t *testing.T) {
	officeHours := dspool.ScaleSchedule{Days: []string{"weekdays"}, From: "08:00", To: "18:00", Min: 3}
	saturday := time.Date(2025, time.March, 8, 12, 0, 0, 0, time.UTC)
	runCases(t, []decideCase{
		{name: "min adds nodes to an empty pool",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 2, Max: 10})},
			want: want{add: 2, reason: "min is 2", min: ptr(2), max: ptr(10)}},
		{name: "min counts ready and provisioning nodes",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 2, Max: 10}), Nodes: []autoscale.Node{ready("a"), provisioning("b")}},
			want: want{add: 0}},
		{name: "gone nodes do not count for min",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 1, Max: 10}), Nodes: []autoscale.Node{node("a", dspool.NodeGone)}},
			want: want{add: 1, reason: "min is 1"}},
		{name: "a failed node is replaced to keep min",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 1, Max: 10}), Nodes: []autoscale.Node{node("a", dspool.NodeFailed)}},
			want: want{add: 1, remove: []string{"a"}, removeWhy: "setup failed", reason: "min is 1"}},
		{name: "an active schedule raises the floor and says so",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Min: 1, Max: 10, Schedules: []dspool.ScaleSchedule{officeHours}}),
				Nodes: []autoscale.Node{ready("a")}},
			want: want{add: 2, reason: "the schedule weekdays 08:00-18:00 UTC keeps at least 3", min: ptr(3)}},
		{name: "an inactive schedule leaves the floor at min",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 1, Max: 10, Schedules: []dspool.ScaleSchedule{officeHours}})},
			now:  saturday,
			want: want{add: 1, reason: "min is 1", min: ptr(1)}},
		{name: "a schedule below min does not lower it",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Min: 4, Max: 10, Schedules: []dspool.ScaleSchedule{officeHours}}),
				Nodes: []autoscale.Node{ready("a")}},
			want: want{add: 3, reason: "min is 4", min: ptr(4)}},
		{name: "the highest active schedule sets the floor",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Schedules: []dspool.ScaleSchedule{
				officeHours,
				{Days: []string{"mon"}, From: "11:00", To: "13:00", Min: 5},
				{Days: []string{"tue"}, From: "11:00", To: "13:00", Min: 7},
			}})},
			want: want{add: 5, reason: "the schedule mon 11:00-13:00 UTC keeps at least 5", min: ptr(5)}},
		{name: "a schedule's max lowers the ceiling",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Schedules: []dspool.ScaleSchedule{
				{Days: []string{"daily"}, From: "00:00", To: "24:00", Max: ptr(2)}}}),
				Waiting: repeat(5, job(1000, gib, 1))},
			want: want{add: 2, waiting: "at its max of 2 nodes", max: ptr(2)}},
		{name: "a floor above another schedule's ceiling is cut to it",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Schedules: []dspool.ScaleSchedule{
				officeHours, {Days: []string{"daily"}, From: "00:00", To: "24:00", Max: ptr(2)}}})},
			want: want{add: 2, min: ptr(2), max: ptr(2)}},
		{name: "a lowered ceiling adds nothing to a pool above it",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Schedules: []dspool.ScaleSchedule{
				{Days: []string{"daily"}, From: "00:00", To: "24:00", Max: ptr(1)}}}),
				Nodes: []autoscale.Node{ready("a", busy), ready("b", busy)}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 0, waiting: "at its max of 1 node"}},
		{name: "warm spares add idle nodes beyond the work",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 2}), Nodes: []autoscale.Node{ready("a", busy)}},
			want: want{add: 2, reason: "warm_spares keeps 2 idle nodes ready, and 0 are idle"}},
		{name: "idle ready and provisioning nodes are warm spares",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 2}),
				Nodes: []autoscale.Node{ready("a", busy), ready("b"), provisioning("c")}},
			want: want{add: 0}},
		{name: "an idle node that waiting work will use is no spare",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 1}),
				Nodes: []autoscale.Node{ready("a")}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 1, reason: "warm_spares keeps 1"}},
		{name: "warm spares come on top of what the work needs",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 1}), Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 2, reason: "1 queued job"}},
		{name: "nodes the floor adds are warm spares",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 2, Max: 10, WarmSpares: 1})},
			want: want{add: 2, reason: "min is 2"}},
		{name: "max caps warm spares",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 2, WarmSpares: 2}), Nodes: []autoscale.Node{ready("a", busy)}},
			want: want{add: 1, reason: "warm_spares"}},
	})
}

func TestDecideRuleMetricsAndOperators(t *testing.T) {
	// Every metric with every operator, at the threshold and either side
	// of it: the rule acts exactly when the window's mean compares true.
	for _, m := range autoscale.Metrics {
		for _, c := range []struct {
			op   string
			v    float64
			acts bool
		}{
			{">", 51, true}, {">", 50, false}, {">", 49, false},
			{">=", 51, true}, {">=", 50, true}, {">=", 49, false},
			{"<", 51, false}, {"<", 50, false}, {"<", 49, true},
			{"<=", 51, false}, {"<=", 50, true}, {"<=", 49, true},
		} {
			t.Run(fmt.Sprintf("%s %s 50 at %v", m, c.op, c.v), func(t *testing.T) {
				st := autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{rule(m, c.op, 50, dspool.ScaleOut, 2)}}),
					Nodes: []autoscale.Node{ready("a", busy)}, History: flat(m, c.v, 10*time.Minute)}
				w := want{}
				if c.acts {
					w = want{add: 2, fired: []int{0}, reason: fmt.Sprintf("%s %s 50 over 5m0s (it is %v)", m, c.op, c.v)}
				}
				w.check(t, autoscale.Decide(&st, t0))
			})
		}
	}
}

func TestDecideRules(t *testing.T) {
	hot := rule(dspool.MetricCPU, ">", 75, dspool.ScaleOut, 1)
	pool := func(rules ...dspool.ScaleRule) *dspool.Pool { return scaling(dspool.Autoscale{Max: 10, Rules: rules}) }
	one := []autoscale.Node{ready("a", busy)}
	runCases(t, []decideCase{
		{name: "a window the history does not cover yet does not act",
			st:   autoscale.State{Pool: pool(hot), Nodes: one, History: flat(dspool.MetricCPU, 90, 4*time.Minute)},
			want: want{}},
		{name: "no history does not act",
			st:   autoscale.State{Pool: pool(hot), Nodes: one},
			want: want{}},
		{name: "history that covers the window exactly acts",
			st:   autoscale.State{Pool: pool(hot), Nodes: one, History: flat(dspool.MetricCPU, 90, 5*time.Minute)},
			want: want{add: 1, fired: []int{0}, reason: "cpu_percent > 75 over 5m0s (it is 90)"}},
		{name: "the mean over the window decides, not the last sample (high last)",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: series(dspool.MetricCPU, 10*time.Minute, func(at time.Time) float64 {
				if at.Equal(t0) {
					return 100
				}
				return 40
			})},
			want: want{}},
		{name: "the mean over the window decides, not the last sample (low last)",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: series(dspool.MetricCPU, 10*time.Minute, func(at time.Time) float64 {
				if at.Equal(t0) {
					return 0
				}
				return 90
			})},
			// Ten samples in (t0-5m, t0]: nine of 90 and one of 0.
			want: want{add: 1, fired: []int{0}, reason: "(it is 81)"}},
		{name: "samples older than the window do not count",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: series(dspool.MetricCPU, 60*time.Minute, func(at time.Time) float64 {
				if at.Before(t0.Add(-5 * time.Minute)) {
					return 100
				}
				return 10
			})},
			want: want{}},
		{name: "a sample after now does not count",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: append(flat(dspool.MetricCPU, 10, 10*time.Minute),
				autoscale.Sample{At: t0.Add(time.Second), Values: [6]float64{100000}})},
			want: want{}},
		{name: "a rule's own window applies",
			st: autoscale.State{Pool: pool(dspool.ScaleRule{Metric: dspool.MetricQueuedJobs, Operator: ">=", Threshold: 3, Window: dspool.Duration(time.Minute),
				Action: dspool.ScaleOut}), Nodes: one,
				History: series(dspool.MetricQueuedJobs, 10*time.Minute, func(at time.Time) float64 {
					if at.After(t0.Add(-time.Minute)) {
						return 3
					}
					return 0
				})},
			want: want{add: 1, fired: []int{0}, reason: "queued_jobs >= 3 over 1m0s (it is 3)"}},
		{name: "a rule in its cooldown does not act",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: flat(dspool.MetricCPU, 90, 10*time.Minute),
				Fired: []time.Time{t0.Add(-4 * time.Minute)}},
			want: want{}},
		{name: "a rule acts again once its cooldown is over",
			st: autoscale.State{Pool: pool(hot), Nodes: one, History: flat(dspool.MetricCPU, 90, 10*time.Minute),
				Fired: []time.Time{t0.Add(-5 * time.Minute)}},
			want: want{add: 1, fired: []int{0}}},
		{name: "Fired names the rule that acted by its index",
			st: autoscale.State{Pool: pool(rule(dspool.MetricMemory, ">", 90, dspool.ScaleOut, 1), hot), Nodes: one,
				History: flat(dspool.MetricCPU, 90, 10*time.Minute)},
			want: want{add: 1, fired: []int{1}, reason: "cpu_percent"}},
		{name: "the larger step of two rules that act wins",
			st: autoscale.State{Pool: pool(hot, rule(dspool.MetricCPU, ">", 50, dspool.ScaleOut, 3)), Nodes: one,
				History: flat(dspool.MetricCPU, 90, 10*time.Minute)},
			want: want{add: 3, fired: []int{0, 1}, reason: "cpu_percent > 50"}},
		{name: "a rule's step is capped by max",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 3, Rules: []dspool.ScaleRule{rule(dspool.MetricCPU, ">", 75, dspool.ScaleOut, 3)}}),
				Nodes: one, History: flat(dspool.MetricCPU, 90, 10*time.Minute)},
			want: want{add: 2, fired: []int{0}}},
		{name: "a rule at max does not act and its cooldown does not start",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 1, Rules: []dspool.ScaleRule{hot}}),
				Nodes: one, History: flat(dspool.MetricCPU, 90, 10*time.Minute)},
			want: want{}},
		{name: "a scale-out rule adds to an empty pool",
			st: autoscale.State{Pool: pool(rule(dspool.MetricQueuedJobs, ">", 0, dspool.ScaleOut, 1)),
				History: flat(dspool.MetricQueuedJobs, 1, 10*time.Minute)},
			want: want{add: 1, fired: []int{0}}},
	})
}

func TestDecideScaleIn(t *testing.T) {
	idle := func(d time.Duration) func(*autoscale.Node) { return idleFor(d) }
	long := idle(11 * time.Minute)
	cool := rule(dspool.MetricCPU, "<", 20, dspool.ScaleIn, 2)
	coolHistory := flat(dspool.MetricCPU, 5, 10*time.Minute)
	// a was created first, c last; b has been idle the longest.
	abc := []autoscale.Node{
		ready("a", created(3*time.Hour), idle(20*time.Minute)),
		ready("b", created(2*time.Hour), idle(30*time.Minute)),
		ready("c", created(1*time.Hour), idle(15*time.Minute)),
	}
	policy := func(p string) *dspool.Pool { return scaling(dspool.Autoscale{Min: 2, Max: 10, ScaleInPolicy: p}) }
	runCases(t, []decideCase{
		{name: "nodes idle past idle_timeout go",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{ready("a", long), ready("b", long)}},
			want: want{remove: []string{"a", "b"}, removeWhy: "idle for 11m0s (idle_timeout 10m0s)"}},
		{name: "a node idle exactly idle_timeout goes",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{ready("a", idle(10*time.Minute))}},
			want: want{remove: []string{"a"}}},
		{name: "nodes idle less than idle_timeout stay",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{ready("a", idle(9*time.Minute))}},
			want: want{}},
		{name: "the pool's own idle_timeout applies",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, IdleTimeout: dspool.Duration(time.Hour)}),
				Nodes: []autoscale.Node{ready("a", long), ready("b", idle(2*time.Hour))}},
			want: want{remove: []string{"b"}, removeWhy: "idle_timeout 1h0m0s"}},
		{name: "scale-in stops at min",
			st:   autoscale.State{Pool: policy(""), Nodes: abc},
			want: want{remove: []string{"b"}}},
		{name: "scale-in counts busy nodes toward min",
			st: autoscale.State{Pool: policy(""),
				Nodes: []autoscale.Node{ready("a", busy), ready("b", long), ready("c", long)}},
			want: want{remove: []string{"b"}}},
		{name: "scale-in keeps the warm spares",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 1}),
				Nodes: []autoscale.Node{ready("a", long), ready("b", long), ready("c", long)}},
			want: want{remove: []string{"a", "b"}}},
		{name: "lost and draining nodes are no warm spares",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 1}),
				Nodes: []autoscale.Node{ready("a", idle(time.Hour)), node("b", dspool.NodeLost, long), node("c", dspool.NodeDraining, long)}},
			want: want{remove: []string{"b", "c"}}},
		{name: "lru removes the node idle the longest",
			st:   autoscale.State{Pool: policy(dspool.ScaleInLRU), Nodes: abc},
			want: want{remove: []string{"b"}}},
		{name: "oldest removes the node created first",
			st:   autoscale.State{Pool: policy(dspool.ScaleInOldest), Nodes: abc},
			want: want{remove: []string{"a"}}},
		{name: "newest removes the node created last",
			st:   autoscale.State{Pool: policy(dspool.ScaleInNewest), Nodes: abc},
			want: want{remove: []string{"c"}}},
		{name: "lru ties go by name",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Min: 1, Max: 10}),
				Nodes: []autoscale.Node{ready("b", long), ready("a", long)}},
			want: want{remove: []string{"a"}}},
		{name: "a node with an attempt or a session is never removed",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{ready("a", busy, idle(time.Hour)), ready("b", sessions(1), idle(time.Hour)),
					node("c", dspool.NodeLost, busy, idle(time.Hour)), node("d", dspool.NodeDraining, sessions(2), idle(time.Hour)),
					node("e", dspool.NodeFailed, busy)}},
			want: want{}},
		{name: "an idle node that waiting work would use is not removed",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{ready("a", idle(time.Hour))}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{}},
		{name: "only the idle nodes waiting work does not use go",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{ready("a", long), ready("b", long)}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{remove: []string{"b"}}},
		{name: "nothing is removed while nodes are added",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Min: 3, Max: 10}),
				Nodes: []autoscale.Node{ready("a", long), ready("b", busy)}},
			want: want{add: 1, reason: "min is 3"}},
		{name: "a node whose setup failed is removed",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{node("a", dspool.NodeFailed)}},
			want: want{remove: []string{"a"}, removeWhy: "its setup failed (`dspool node show a` has the output)"}},
		{name: "a node not ready within boot_timeout is removed",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{provisioning("a", created(10*time.Minute)), provisioning("b", created(9*time.Minute))}},
			want: want{remove: []string{"a"}, removeWhy: "not ready 10m0s after it was added (boot_timeout)"}},
		{name: "a node that timed out booting is replaced for the work it would have taken",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{provisioning("a", created(time.Hour))}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 1, remove: []string{"a"}, reason: "the pool has no node"}},
		{name: "a failed node does not count toward max",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 1}),
				Nodes: []autoscale.Node{node("a", dspool.NodeFailed)}, Waiting: []autoscale.Demand{job(1000, gib, 1)}},
			want: want{add: 1, remove: []string{"a"}}},
		{name: "a lost idle node goes after idle_timeout",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{node("a", dspool.NodeLost, long), node("b", dspool.NodeLost, idle(5*time.Minute))}},
			want: want{remove: []string{"a"}, removeWhy: "lost for 11m0s (idle_timeout 10m0s)"}},
		{name: "a drained idle node goes at once",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{node("a", dspool.NodeDraining)}},
			want: want{remove: []string{"a"}, removeWhy: "it was drained"}},
		{name: "a scale-in rule removes its step of idle nodes",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a"), ready("b"), ready("c"), ready("d")}, History: coolHistory},
			want: want{remove: []string{"a", "b"}, fired: []int{0}, removeWhy: "cpu_percent < 20 over 5m0s (it is 5)"}},
		{name: "a scale-in rule removes on top of idle_timeout",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a", long), ready("b"), ready("c"), ready("d")}, History: coolHistory},
			want: want{remove: []string{"a", "b", "c"}, fired: []int{0}}},
		{name: "a scale-in rule stops at min",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Min: 3, Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a"), ready("b"), ready("c"), ready("d")}, History: coolHistory},
			want: want{remove: []string{"a"}, fired: []int{0}}},
		{name: "a scale-in rule keeps warm spares",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, WarmSpares: 2, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a"), ready("b"), ready("c")}, History: coolHistory},
			want: want{remove: []string{"a"}, fired: []int{0}}},
		{name: "a scale-in rule takes only idle nodes",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a", busy), ready("b"), ready("c", sessions(1))}, History: coolHistory},
			want: want{remove: []string{"b"}, fired: []int{0}}},
		{name: "a scale-in rule with no idle node to take does not fire",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a", busy)}, History: coolHistory},
			want: want{}},
		{name: "a scale-in rule in its cooldown does not act",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{cool}}),
				Nodes: []autoscale.Node{ready("a"), ready("b")}, History: coolHistory, Fired: []time.Time{t0.Add(-time.Minute)}},
			want: want{}},
		{name: "a scale-in rule follows the scale-in policy",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, ScaleInPolicy: dspool.ScaleInNewest,
				Rules: []dspool.ScaleRule{rule(dspool.MetricCPU, "<", 20, dspool.ScaleIn, 1)}}), History: coolHistory,
				Nodes: []autoscale.Node{ready("a", created(3*time.Hour)), ready("c", created(time.Hour)), ready("b", created(2*time.Hour))}},
			want: want{remove: []string{"c"}, fired: []int{0}}},
	})
}

func TestDecideBackoff(t *testing.T) {
	hot := rule(dspool.MetricCPU, ">", 75, dspool.ScaleOut, 1)
	runCases(t, []decideCase{
		{name: "backoff blocks adding and says why the work waits",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Waiting: []autoscale.Demand{job(1000, gib, 1)},
				Backoff: t0.Add(30 * time.Second), BackoffReason: "quota exceeded"},
			want: want{waiting: "adding nodes to pool gpu failed (quota exceeded); trying again in 30s", reason: "1 queued job"}},
		{name: "backoff blocks the floor",
			st:   autoscale.State{Pool: scaling(dspool.Autoscale{Min: 2, Max: 10}), Backoff: t0.Add(time.Minute), BackoffReason: "x"},
			want: want{waiting: "trying again in 1m0s", reason: "min is 2"}},
		{name: "a rule blocked by backoff does not start its cooldown",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10, Rules: []dspool.ScaleRule{hot}}), Nodes: []autoscale.Node{ready("a", busy)},
				History: flat(dspool.MetricCPU, 90, 10*time.Minute), Backoff: t0.Add(time.Minute), BackoffReason: "x"},
			want: want{waiting: "trying again in 1m0s", reason: "cpu_percent"}},
		{name: "a backoff that is over does not block",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Waiting: []autoscale.Demand{job(1000, gib, 1)},
				Backoff: t0, BackoffReason: "quota exceeded"},
			want: want{add: 1, reason: "1 queued job"}},
		{name: "backoff does not stop removing failed nodes",
			st: autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{node("a", dspool.NodeFailed)},
				Waiting: []autoscale.Demand{job(1000, gib, 1)}, Backoff: t0.Add(time.Minute), BackoffReason: "x"},
			want: want{remove: []string{"a"}, waiting: "failed (x)", reason: "1 queued job"}},
	})
}

func TestDecideFixedPool(t *testing.T) {
	long := idleFor(time.Hour)
	runCases(t, []decideCase{
		{name: "a fixed pool is filled to its count",
			st:   autoscale.State{Pool: fixed(3)},
			want: want{add: 3, reason: "pool gpu keeps 3 nodes", min: ptr(3), max: ptr(3)}},
		{name: "a fixed pool keeps its count however long they idle",
			st:   autoscale.State{Pool: fixed(3), Nodes: []autoscale.Node{ready("a", long), ready("b", long), ready("c", long)}},
			want: want{}},
		{name: "a fixed pool sheds its highest-numbered idle nodes above its count at once",
			st: autoscale.State{Pool: fixed(2), Nodes: []autoscale.Node{ready("gpu-10"), ready("gpu-2", created(time.Hour)),
				ready("gpu-1", created(time.Minute)), ready("gpu-9")}},
			want: want{remove: []string{"gpu-10", "gpu-9"}, removeWhy: "pool gpu keeps 2 nodes"}},
		{name: "a fixed pool sheds only idle surplus",
			st:   autoscale.State{Pool: fixed(2), Nodes: []autoscale.Node{ready("a", busy), ready("b", busy), ready("c", busy), ready("d")}},
			want: want{remove: []string{"d"}}},
		{name: "a fixed pool does not grow for work",
			st: autoscale.State{Pool: fixed(2), Nodes: []autoscale.Node{ready("a", busy), ready("b", busy)},
				Waiting: repeat(3, job(1000, gib, 1))},
			want: want{waiting: "pool gpu keeps 2 nodes, and none has room now"}},
		{name: "a fixed pool replaces a failed node",
			st:   autoscale.State{Pool: fixed(1), Nodes: []autoscale.Node{node("a", dspool.NodeFailed)}},
			want: want{add: 1, remove: []string{"a"}, reason: "pool gpu keeps 1 node"}},
		{name: "a fixed pool of zero removes its idle nodes",
			st:   autoscale.State{Pool: fixed(0), Nodes: []autoscale.Node{ready("a"), ready("b", busy)}},
			want: want{remove: []string{"a"}}},
	})
}

func TestMeasure(t *testing.T) {
	st := autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}), Nodes: []autoscale.Node{
		ready("a", func(n *autoscale.Node) { n.Load1, n.MemUsed, n.GPUsHeld, n.Sessions = 8, 16*gib, 1, 3 }),
		ready("b", func(n *autoscale.Node) { n.Load1, n.MemUsed, n.Sessions = 4, 8*gib, 1 }),
		provisioning("c", func(n *autoscale.Node) { n.Load1, n.MemUsed, n.Sessions = 100, 32*gib, 9 }),
		node("d", dspool.NodeLost, func(n *autoscale.Node) { n.Load1 = 100 }),
	}, Waiting: []autoscale.Demand{job(1000, gib, 0), job(1000, gib, 0), session(1000, gib)}}
	got := autoscale.Measure(&st, t0)
	want := autoscale.Sample{At: t0, Values: [6]float64{75, 37.5, 50, 2, 1, 2}}
	if got != want {
		t.Errorf("Measure = %+v, want %+v", got, want)
	}
	overloaded := autoscale.State{Pool: st.Pool, Nodes: []autoscale.Node{ready("a", func(n *autoscale.Node) { n.Load1 = 64 })}}
	if got := autoscale.Measure(&overloaded, t0).Values[0]; got != 100 {
		t.Errorf("cpu_percent of a node loaded 8x = %v, want 100", got)
	}
	if got := autoscale.Measure(&autoscale.State{Pool: st.Pool}, t0); got != (autoscale.Sample{At: t0}) {
		t.Errorf("Measure of an empty pool = %+v, want zeros", got)
	}
}
