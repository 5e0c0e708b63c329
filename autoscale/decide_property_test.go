package autoscale_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Lisbon wherever the tests run

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// TestDecideInvariants decides many random states and checks what must
// hold whatever the state.
func TestDecideInvariants(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 0x5ca1e))
		for i := range 500 {
			st, now := randomState(r)
			before := cloneState(st)
			d := autoscale.Decide(st, now)
			if !reflect.DeepEqual(st, before) {
				t.Fatalf("seed %d state %d: Decide modified its input", seed, i)
			}
			if err := checkInvariants(st, now, d); err != nil {
				t.Fatalf("seed %d state %d: %v\nstate: %s\ndecision: %+v", seed, i, err, dump(st, now), d)
			}
			shuffled := cloneState(st)
			r.Shuffle(len(shuffled.Nodes), func(i, j int) { shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i] })
			if got, want := canonical(autoscale.Decide(shuffled, now)), canonical(d); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d state %d: with the nodes in another order got %+v, want %+v\nstate: %s", seed, i, got, want, dump(st, now))
			}
		}
	}
}

func TestDecideIsDeterministic(t *testing.T) {
	tests := []struct {
		name   string
		st     *autoscale.State
		add    int
		remove int
	}{
		// Which of two idle nodes a waiting job lands on, and so which one
		// goes, must not depend on the order the caller lists them in.
		{"idle nodes either of which work could use",
			&autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes:   []autoscale.Node{ready("a", idleFor(time.Hour)), ready("b", idleFor(time.Hour)), ready("c", busy)},
				Waiting: []autoscale.Demand{job(1000, gib, 1)}}, 0, 1},
		{"mixed nodes and work",
			&autoscale.State{Pool: scaling(dspool.Autoscale{Max: 10}),
				Nodes: []autoscale.Node{ready("a", idleFor(time.Hour)), ready("b", idleFor(time.Hour)), ready("c", busy),
					ready("d", busy, freeCPUs(1000)), provisioning("e"), node("f", dspool.NodeLost, idleFor(time.Hour)),
					node("g", dspool.NodeFailed)},
				Waiting: []autoscale.Demand{job(1000, gib, 1), session(1000, gib), job(1000, gib, 0), job(4000, gib, 1),
					job(4000, gib, 1), job(4000, gib, 1), job(7000, gib, 0), session(1000, gib)}}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := canonical(autoscale.Decide(tt.st, t0))
			if want.Add != tt.add || len(want.Remove) != tt.remove {
				t.Fatalf("got %+v, want %d added and %d removed", want, tt.add, tt.remove)
			}
			r := rand.New(rand.NewPCG(1, 2))
			for range 50 {
				c := cloneState(tt.st)
				r.Shuffle(len(c.Nodes), func(i, j int) { c.Nodes[i], c.Nodes[j] = c.Nodes[j], c.Nodes[i] })
				if got := canonical(autoscale.Decide(c, t0)); !reflect.DeepEqual(got, want) {
					t.Fatalf("nodes %v: got %+v, want %+v", names(c.Nodes), got, want)
				}
				// Equal work of different kinds may swap places in
				// AddReason when the work is listed in another order;
				// what is done must not change.
				r.Shuffle(len(c.Waiting), func(i, j int) { c.Waiting[i], c.Waiting[j] = c.Waiting[j], c.Waiting[i] })
				got := canonical(autoscale.Decide(c, t0))
				got.AddReason = want.AddReason
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("nodes %v waiting %v: got %+v, want %+v", names(c.Nodes), c.Waiting, got, want)
				}
			}
		})
	}
}

func names(ns []autoscale.Node) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return s
}

// canonical is d with its removals sorted, for comparing decisions as sets.
func canonical(d autoscale.Decision) autoscale.Decision {
	d.Remove = slices.Clone(d.Remove)
	slices.SortFunc(d.Remove, func(a, b autoscale.Removal) int { return strings.Compare(a.ID, b.ID) })
	return d
}

// checkInvariants returns what d breaks of what must hold for any state.
func checkInvariants(st *autoscale.State, now time.Time, d autoscale.Decision) error {
	pol := autoscale.Policy(st.Pool)
	byID := map[string]*autoscale.Node{}
	for i := range st.Nodes {
		byID[st.Nodes[i].ID] = &st.Nodes[i]
	}
	// cleanup: failed nodes and nodes that timed out booting, which go
	// whatever the pool's size.
	cleanup := func(n *autoscale.Node) bool {
		return n.State == dspool.NodeFailed && n.Idle() ||
			n.State == dspool.NodeProvisioning && now.Sub(n.Created) >= time.Duration(pol.BootTimeout)
	}
	live := 0
	for i := range st.Nodes {
		if n := &st.Nodes[i]; n.State != dspool.NodeGone && !cleanup(n) {
			live++
		}
	}
	removed := map[string]bool{}
	scaleIn, readyGone := 0, false
	for _, r := range d.Remove {
		n, ok := byID[r.ID]
		switch {
		case !ok:
			return fmt.Errorf("removes %s, which is no node of the pool", r.ID)
		case removed[r.ID]:
			return fmt.Errorf("removes %s twice", r.ID)
		case !n.Idle():
			return fmt.Errorf("removes %s, which has %d attempts and %d sessions", n.Name, n.Attempts, n.Sessions)
		case n.State == dspool.NodeGone:
			return fmt.Errorf("removes %s, which is gone", n.Name)
		case r.Reason == "":
			return fmt.Errorf("removes %s without a reason", n.Name)
		}
		removed[r.ID] = true
		if !cleanup(n) {
			scaleIn++
			readyGone = readyGone || n.State == dspool.NodeReady
			if d.Add > 0 {
				return fmt.Errorf("adds %d nodes and removes %s (%s)", d.Add, n.Name, r.Reason)
			}
		}
	}
	if d.Add < 0 {
		return fmt.Errorf("Add is %d", d.Add)
	}
	if d.Add > 0 && live+d.Add > d.Max {
		return fmt.Errorf("adds %d to %d live nodes, above max %d", d.Add, live, d.Max)
	}
	if d.Add > 0 && now.Before(st.Backoff) {
		return fmt.Errorf("adds %d during a backoff", d.Add)
	}
	if d.Add > 0 && d.AddReason == "" {
		return fmt.Errorf("adds %d without a reason", d.Add)
	}
	if scaleIn > 0 && live-scaleIn < d.Min {
		return fmt.Errorf("removes %d of %d live nodes, below min %d", scaleIn, live, d.Min)
	}
	if d.Min > d.Max || d.Max > pol.Max || d.Min < 0 {
		return fmt.Errorf("bounds %d..%d for a policy of %d..%d", d.Min, d.Max, pol.Min, pol.Max)
	}
	if readyGone {
		// A ready node goes only while as many idle ready ones as the warm
		// spares stay.
		spares := 0
		for i := range st.Nodes {
			if n := &st.Nodes[i]; n.State == dspool.NodeReady && n.Idle() && !removed[n.ID] {
				spares++
			}
		}
		if spares < pol.WarmSpares {
			return fmt.Errorf("scale-in leaves %d idle ready nodes, fewer than warm_spares %d", spares, pol.WarmSpares)
		}
	}
	for _, i := range d.Fired {
		if i < 0 || i >= len(pol.Rules) {
			return fmt.Errorf("Fired names rule %d of %d", i, len(pol.Rules))
		}
		if i < len(st.Fired) && !st.Fired[i].IsZero() && now.Sub(st.Fired[i]) < time.Duration(pol.Rules[i].Cooldown) {
			return fmt.Errorf("rule %d fired in its cooldown", i)
		}
	}
	return nil
}

var (
	states  = []dspool.NodeState{dspool.NodeProvisioning, dspool.NodeReady, dspool.NodeReady, dspool.NodeReady, dspool.NodeDraining, dspool.NodeLost, dspool.NodeFailed, dspool.NodeGone}
	ops     = []string{">", ">=", "<", "<="}
	dayOpts = [][]string{{"weekdays"}, {"weekends"}, {"daily"}, {"mon", "fri"}, {"sun"}}
)

// randomState returns a valid pool with random nodes, work, history and
// rule firings, and a moment in the week after t0 to decide at.
func randomState(r *rand.Rand) (*autoscale.State, time.Time) {
	now := t0.Add(time.Duration(r.IntN(7*24*60)) * time.Minute)
	minutes := func(lo, hi int) time.Duration { return time.Duration(lo+r.IntN(hi-lo+1)) * time.Minute }
	var p *dspool.Pool
	if r.IntN(5) == 0 {
		p = fixed(r.IntN(6))
	} else {
		a := dspool.Autoscale{Max: 1 + r.IntN(12), IdleTimeout: dspool.Duration(minutes(1, 20)), BootTimeout: dspool.Duration(minutes(1, 20)),
			ScaleInPolicy: []string{"", dspool.ScaleInLRU, dspool.ScaleInOldest, dspool.ScaleInNewest}[r.IntN(4)]}
		a.Min = r.IntN(a.Max + 1)
		a.WarmSpares = r.IntN(min(3, a.Max) + 1)
		for range r.IntN(4) {
			m := autoscale.Metrics[r.IntN(len(autoscale.Metrics))]
			th := float64(r.IntN(101))
			if !strings.HasSuffix(m, "_percent") {
				th = float64(r.IntN(6))
			}
			a.Rules = append(a.Rules, dspool.ScaleRule{Metric: m, Operator: ops[r.IntN(4)], Threshold: th, Window: dspool.Duration(minutes(1, 10)),
				Action: []string{dspool.ScaleOut, dspool.ScaleIn}[r.IntN(2)], Step: 1 + r.IntN(a.Max), Cooldown: dspool.Duration(minutes(1, 10))})
		}
		for range r.IntN(3) {
			from := r.IntN(24)
			to := (from + 1 + r.IntN(23)) % 24
			s := dspool.ScaleSchedule{Days: slices.Clone(dayOpts[r.IntN(len(dayOpts))]), From: fmt.Sprintf("%02d:00", from), To: fmt.Sprintf("%02d:00", to),
				Timezone: []string{"", "Europe/Lisbon", "America/New_York"}[r.IntN(3)], Min: r.IntN(a.Max + 1)}
			if r.IntN(2) == 0 {
				s.Max = ptr(s.Min + r.IntN(a.Max-s.Min+1))
			}
			a.Schedules = append(a.Schedules, s)
		}
		p = scaling(a)
	}
	st := &autoscale.State{Pool: p}
	for i := range r.IntN(16) {
		n := autoscale.Node{ID: fmt.Sprintf("id%02d", i), Name: fmt.Sprintf("n%02d", i), State: states[r.IntN(len(states))],
			Created: now.Add(-minutes(0, 180))}
		n.IdleSince = n.Created.Add(time.Duration(r.Int64N(int64(now.Sub(n.Created)) + 1)))
		// A provisioning node has no work yet; a node of any other state may.
		if n.State != dspool.NodeProvisioning && r.IntN(2) == 0 {
			n.Attempts = r.IntN(3)
			n.Sessions = r.IntN(3)
		}
		n.FreeCPUs, n.FreeMem, n.FreeGPUs = size.CPUs, size.Memory, size.GPUs
		if !n.Idle() {
			n.FreeCPUs = dspool.MilliCPU(r.Int64N(int64(size.CPUs) + 1))
			n.FreeMem = dspool.Bytes(r.Int64N(int64(size.Memory) + 1))
			n.FreeGPUs = r.IntN(size.GPUs + 1)
		}
		n.Load1, n.MemUsed, n.GPUsHeld = r.Float64()*10, dspool.Bytes(r.Int64N(int64(size.Memory))), r.IntN(2)
		st.Nodes = append(st.Nodes, n)
	}
	for range r.IntN(12) {
		d := autoscale.Demand{Kind: autoscale.KindJob, CPUs: dspool.MilliCPU(500 * (1 + r.IntN(20))), Memory: gib * dspool.Bytes(1+r.IntN(40)),
			GPUs: r.IntN(3), Since: now.Add(-minutes(0, 30))}
		if r.IntN(3) == 0 {
			d.Kind, d.GPUs = autoscale.KindSession, 0
		}
		st.Waiting = append(st.Waiting, d)
	}
	at := now.Add(-minutes(0, 15))
	for range r.IntN(60) {
		s := autoscale.Sample{At: at}
		for m := range s.Values {
			s.Values[m] = float64(r.IntN(101))
			if m >= 3 {
				s.Values[m] = float64(r.IntN(6))
			}
		}
		st.History = append(st.History, s)
		at = at.Add(time.Duration(r.IntN(40)) * time.Second)
	}
	if p.Autoscale != nil {
		for range p.Autoscale.Rules {
			var f time.Time
			if r.IntN(2) == 0 {
				f = now.Add(-minutes(0, 15))
			}
			st.Fired = append(st.Fired, f)
		}
	}
	if r.IntN(5) == 0 {
		st.Backoff, st.BackoffReason = now.Add(minutes(-2, 5)), "provider refused"
	}
	return st, now
}

func cloneState(st *autoscale.State) *autoscale.State {
	c := *st
	p := *st.Pool
	if st.Pool.Autoscale != nil {
		a := *st.Pool.Autoscale
		a.Rules = slices.Clone(a.Rules)
		a.Schedules = slices.Clone(a.Schedules)
		for i := range a.Schedules {
			a.Schedules[i].Days = slices.Clone(a.Schedules[i].Days)
			if m := a.Schedules[i].Max; m != nil {
				a.Schedules[i].Max = ptr(*m)
			}
		}
		p.Autoscale = &a
	}
	p.Work = slices.Clone(p.Work)
	c.Pool = &p
	c.Nodes = slices.Clone(st.Nodes)
	c.Waiting = slices.Clone(st.Waiting)
	c.History = slices.Clone(st.History)
	c.Fired = slices.Clone(st.Fired)
	return &c
}

func dump(st *autoscale.State, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "now %s backoff %s\npool count %d autoscale %+v\n", now, st.Backoff, st.Pool.Count, st.Pool.Autoscale)
	for _, n := range st.Nodes {
		fmt.Fprintf(&b, "  node %s %s created %s idle since %s attempts %d sessions %d free %s/%s/%d\n", n.Name, n.State,
			now.Sub(n.Created), now.Sub(n.IdleSince), n.Attempts, n.Sessions, n.FreeCPUs, n.FreeMem, n.FreeGPUs)
	}
	for _, w := range st.Waiting {
		fmt.Fprintf(&b, "  waiting %s %s/%s/%d\n", w.Kind, w.CPUs, w.Memory, w.GPUs)
	}
	fmt.Fprintf(&b, "  fired %v, %d samples\n", st.Fired, len(st.History))
	return b.String()
}

// benchState is a busy pool: nodes of which some are idle, work waiting,
// history at 10s intervals, rules and a schedule in a local time zone.
func benchState(nodes, waiting, samples int, tz string, r *rand.Rand) *autoscale.State {
	p := scaling(dspool.Autoscale{Min: 2, Max: 2 * nodes, WarmSpares: 2, Rules: []dspool.ScaleRule{
		rule(dspool.MetricCPU, ">", 75, dspool.ScaleOut, 2),
		rule(dspool.MetricCPU, "<", 20, dspool.ScaleIn, 1),
		rule(dspool.MetricQueuedJobs, ">=", 10, dspool.ScaleOut, 4),
	}, Schedules: []dspool.ScaleSchedule{{Days: []string{"weekdays"}, From: "08:00", To: "19:00", Timezone: tz, Min: 4}}})
	st := &autoscale.State{Pool: p, Fired: make([]time.Time, 3)}
	for i := range nodes {
		n := ready(fmt.Sprintf("n%03d", i), created(time.Duration(i)*time.Minute), idleFor(time.Duration(r.IntN(30))*time.Minute))
		if r.IntN(4) != 0 {
			busy(&n)
			n.FreeCPUs = dspool.MilliCPU(r.IntN(8) * 1000)
		}
		n.Load1 = r.Float64() * 8
		st.Nodes = append(st.Nodes, n)
	}
	for range waiting {
		st.Waiting = append(st.Waiting, job(dspool.MilliCPU(500*(1+r.IntN(8))), gib*dspool.Bytes(1+r.IntN(16)), r.IntN(2)))
	}
	for i := range samples {
		s := autoscale.Sample{At: t0.Add(-time.Duration(samples-1-i) * 10 * time.Second)}
		for m := range s.Values {
			s.Values[m] = float64(r.IntN(100))
		}
		st.History = append(st.History, s)
	}
	return st
}

// BenchmarkDecide decides one pool of 50 nodes with 200 waiting jobs and
// 300 samples of history.
func BenchmarkDecide(b *testing.B) {
	st := benchState(50, 200, 300, "UTC", rand.New(rand.NewPCG(1, 1)))
	b.ReportAllocs()
	for b.Loop() {
		autoscale.Decide(st, t0)
	}
}

// BenchmarkDecide1000Pools decides 1,000 typical pools (10 nodes, 5
// waiting jobs, 30 minutes of history at 10s, three rules and a schedule)
// per iteration; the target is 10ms for the 1,000. The schedule's time
// zone is a sub-benchmark: any zone but UTC is loaded from the zone
// database at every decision.
func BenchmarkDecide1000Pools(b *testing.B) {
	for _, tz := range []string{"UTC", "Europe/Lisbon"} {
		b.Run(strings.ReplaceAll(tz, "/", "_"), func(b *testing.B) {
			r := rand.New(rand.NewPCG(2, 2))
			pools := make([]*autoscale.State, 1000)
			for i := range pools {
				pools[i] = benchState(10, 5, 180, tz, r)
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, st := range pools {
					autoscale.Decide(st, t0)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/1000pools")
		})
	}
}
