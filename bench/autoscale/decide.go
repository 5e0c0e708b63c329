package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// DecideResult is the time autoscale.Decide takes over all the pools, once
// per repetition: the control plane's autoscaler decides for every pool on
// each of its ticks.
type DecideResult struct {
	Pools int `json:"pools"`
	// What the pools hold, in total.
	Nodes, Waiting, Rules, Schedules int
	P50Ms                            float64 `json:"p50_ms"`
	P99Ms                            float64 `json:"p99_ms"`
	MaxMs                            float64 `json:"max_ms"`
	// The same pools with their schedules taken away: Bounds loads each
	// schedule's time zone on every call.
	NoSchedulesP50Ms float64 `json:"no_schedules_p50_ms"`
	NoSchedulesP99Ms float64 `json:"no_schedules_p99_ms"`
	// Decisions that add or remove nodes, of Pools.
	Acting int `json:"acting"`
}

var sizes = []dspool.NodeSize{
	{CPUs: 8000, Memory: 32 << 30},
	{CPUs: 16000, Memory: 64 << 30},
	{CPUs: 8000, Memory: 32 << 30, GPUs: 1},
	{CPUs: 32000, Memory: 128 << 30, GPUs: 4},
}

var zones = []string{"Europe/Lisbon", "America/New_York", "Asia/Tokyo", "UTC"}

// states builds n pool states as a control plane of many teams would hold
// them: 0 to 40 nodes (most ready, some booting, some idle), waiting work
// in one pool of five, rules in half the pools with ten minutes of one-
// second samples, schedules in a third.
func states(n int, now time.Time) []*autoscale.State {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]*autoscale.State, n)
	for i := range out {
		size := sizes[r.IntN(len(sizes))]
		a := &dspool.Autoscale{Min: r.IntN(3), Max: 10 + r.IntN(91), IdleTimeout: dspool.Duration(10 * time.Minute),
			BootTimeout: dspool.Duration(10 * time.Minute), WaitTimeout: dspool.Duration(10 * time.Minute),
			ScaleInPolicy: dspool.ScaleInLRU, WarmSpares: r.IntN(2)}
		if r.IntN(2) == 0 {
			a.Rules = []dspool.ScaleRule{
				{Metric: dspool.MetricCPU, Operator: ">", Threshold: 70, Window: dspool.Duration(5 * time.Minute), Action: dspool.ScaleOut, Step: 1, Cooldown: dspool.Duration(5 * time.Minute)},
				{Metric: dspool.MetricCPU, Operator: "<", Threshold: 30, Window: dspool.Duration(10 * time.Minute), Action: dspool.ScaleIn, Step: 1, Cooldown: dspool.Duration(10 * time.Minute)},
			}
		}
		if r.IntN(3) == 0 {
			for k := range 1 + r.IntN(2) {
				a.Schedules = append(a.Schedules, dspool.ScaleSchedule{Days: []string{"mon", "tue", "wed", "thu", "fri"},
					From: fmt.Sprintf("%02d:00", 7+k*10), To: fmt.Sprintf("%02d:00", 9+k*10), Timezone: zones[r.IntN(len(zones))], Min: 1})
			}
		}
		p := &dspool.Pool{Name: fmt.Sprintf("pool-%04d", i), Provider: dspool.Provider(dspool.ProviderLocal), Node: size,
			Work: []dspool.Work{dspool.WorkBatch, dspool.WorkInteractive}, Autoscale: a}
		st := &autoscale.State{Pool: p, Fired: make([]time.Time, len(a.Rules))}
		nodes := r.IntN(41)
		for k := range nodes {
			nd := autoscale.Node{ID: fmt.Sprintf("n-%04d-%03d", i, k), Name: fmt.Sprintf("%s-%03d", p.Name, k), State: dspool.NodeReady,
				Created: now.Add(-time.Duration(r.IntN(86400)) * time.Second)}
			nd.IdleSince = now.Add(-time.Duration(r.IntN(1800)) * time.Second)
			switch x := r.IntN(10); {
			case x == 0:
				nd.State = dspool.NodeProvisioning
				nd.Created = now.Add(-time.Duration(r.IntN(120)) * time.Second)
			case x < 4: // idle
				nd.FreeCPUs, nd.FreeMem, nd.FreeGPUs = size.CPUs, size.Memory, size.GPUs
			default:
				nd.Attempts = 1 + r.IntN(4)
				nd.Sessions = r.IntN(3)
				nd.FreeCPUs = size.CPUs * dspool.MilliCPU(r.IntN(5)) / 8
				nd.FreeMem = size.Memory * dspool.Bytes(r.IntN(5)) / 8
				nd.FreeGPUs = r.IntN(size.GPUs + 1)
				nd.Load1 = float64(size.CPUs-nd.FreeCPUs) / 1000
				nd.MemUsed = size.Memory - nd.FreeMem
				nd.GPUsHeld = size.GPUs - nd.FreeGPUs
			}
			st.Nodes = append(st.Nodes, nd)
		}
		if r.IntN(5) == 0 {
			for range 1 + r.IntN(50) {
				d := autoscale.Demand{Kind: autoscale.KindJob, CPUs: dspool.MilliCPU(1+r.IntN(4)) * 1000, Memory: dspool.Bytes(1+r.IntN(8)) << 30,
					Since: now.Add(-time.Duration(r.IntN(600)) * time.Second)}
				if r.IntN(4) == 0 {
					d.Kind, d.CPUs, d.Memory = autoscale.KindSession, 2000, 8<<30
				}
				if size.GPUs > 0 && r.IntN(2) == 0 {
					d.GPUs = 1
				}
				st.Waiting = append(st.Waiting, d)
			}
		}
		if len(a.Rules) > 0 {
			level := r.Float64() * 100
			for k := 600; k >= 0; k-- {
				level = min(100, max(0, level+r.NormFloat64()*3))
				st.History = append(st.History, autoscale.Sample{At: now.Add(-time.Duration(k) * time.Second), Values: [6]float64{level, level / 2}})
			}
		}
		out[i] = st
	}
	return out
}

func benchDecide(pools, reps int) DecideResult {
	now := time.Date(2026, 6, 2, 9, 30, 0, 0, time.UTC) // a Tuesday morning: schedules in force
	sts := states(pools, now)
	res := DecideResult{Pools: pools}
	for _, st := range sts {
		res.Nodes += len(st.Nodes)
		res.Waiting += len(st.Waiting)
		res.Rules += len(st.Pool.Autoscale.Rules)
		res.Schedules += len(st.Pool.Autoscale.Schedules)
		if d := autoscale.Decide(st, now); d.Add > 0 || len(d.Remove) > 0 {
			res.Acting++
		}
	}
	res.P50Ms, res.P99Ms, res.MaxMs = timeDecide(sts, now, reps)
	for _, st := range sts {
		st.Pool.Autoscale.Schedules = nil
	}
	res.NoSchedulesP50Ms, res.NoSchedulesP99Ms, _ = timeDecide(sts, now, reps)
	return res
}

// timeDecide decides for every pool, reps times, and returns the p50,
// p99 (nearest rank) and max of the time for all of them.
func timeDecide(sts []*autoscale.State, now time.Time, reps int) (p50, p99, maxMs float64) {
	var times []time.Duration
	acted := 0
	for range reps + 1 { // the first warms caches and is dropped
		start := time.Now()
		for _, st := range sts {
			if d := autoscale.Decide(st, now); d.Add > 0 {
				acted++
			}
		}
		times = append(times, time.Since(start))
	}
	times = times[1:]
	slices.Sort(times)
	at := func(q float64) float64 { return ms(times[max(0, int(q*float64(len(times))+0.999999)-1)]) }
	_ = acted
	return at(0.5), at(0.99), ms(times[len(times)-1])
}
