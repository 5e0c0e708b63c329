package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/fairshare"
	"github.com/dspool/dspool/scheduler"
)

// passResult is the time of one whole pass at scale: the factors of 1,000
// users with work from their decayed usage, the scores of every queued
// job, and the plan with reservations and backfill.
type passResult struct {
	Queued       int     `json:"queued"`
	Nodes        int     `json:"nodes"`
	Users        int     `json:"users"`
	Reserving    int     `json:"reserving"`
	Placed       int     `json:"placed"`
	Reservations int     `json:"reservations"`
	FactorsP50Ms float64 `json:"factors_p50_ms"`
	ScoreP50Ms   float64 `json:"score_p50_ms"`
	PlanP50Ms    float64 `json:"plan_p50_ms"`
	TotalP50Ms   float64 `json:"total_p50_ms"`
	TotalMaxMs   float64 `json:"total_max_ms"`
}

// benchPass times passes over queued jobs on 10,000 nodes of two pools (8
// cpus and 32GiB, one in four with 4 GPUs, as scheduler's BenchmarkPlan),
// nearly full: each has at most 1 cpu and 2GiB left, and running work that
// ends by its time limits within 4 hours. One job in ten has waited long
// enough to reserve; half have a time limit.
func benchPass(queued, reps int, cfg fairshare.Config) *passResult {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	nodes, ledger, qs := passInputs(queued, now, cfg)
	res := &passResult{Queued: queued, Nodes: len(nodes), Users: users}
	var factors, score, plan, total []time.Duration
	for range reps {
		t0 := time.Now()
		usage := ledger.Usage(now)
		keys := make([]fairshare.Key, len(qs))
		for i, q := range qs {
			keys[i] = fairshare.Key{User: q.user}
		}
		st := fairshare.Factors(keys, usage, fairshare.Shares{}, cfg.Billing)
		t1 := time.Now()
		jobs := make([]scheduler.Job, len(qs))
		res.Reserving = 0
		for i, q := range qs {
			age := now.Sub(q.submit)
			jobs[i] = scheduler.Job{ID: int64(i), Pool: q.pool, Priority: q.priority, CPUs: q.cpus, Memory: q.mem, GPUs: q.gpus, User: q.user,
				TimeLimit: q.limit, Score: cfg.Score(q.priority, age, st.Users[keys[i]].Factor), Reserve: cfg.Reserves(age)}
			if jobs[i].Reserve {
				res.Reserving++
			}
		}
		t2 := time.Now()
		out := scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false)
		t3 := time.Now()
		res.Placed, res.Reservations = len(out.Placements), len(out.Reservations)
		factors, score, plan, total = append(factors, t1.Sub(t0)), append(score, t2.Sub(t1)), append(plan, t3.Sub(t2)), append(total, t3.Sub(t0))
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}
	res.FactorsP50Ms, res.ScoreP50Ms, res.PlanP50Ms, res.TotalP50Ms = med(factors), med(score), med(plan), med(total)
	res.TotalMaxMs = float64(slices.Max(total)) / float64(time.Millisecond)
	return res
}

const users = 1000

// queuedJob is a queued job of the pass benchmark.
type queuedJob struct {
	user     string
	priority int
	submit   time.Time
	limit    time.Duration
	cpus     dspool.MilliCPU
	mem      dspool.Bytes
	gpus     int
	pool     string
}

// passInputs makes the nodes, the users' decayed usage and the queue of
// the pass benchmark, from a fixed seed.
func passInputs(queued int, now time.Time, cfg fairshare.Config) ([]scheduler.Node, *fairshare.Ledger, []queuedJob) {
	r := rand.New(rand.NewPCG(7, 8))
	nodes := make([]scheduler.Node, 10_000)
	for i := range nodes {
		n := scheduler.Node{ID: fmt.Sprintf("node-%05d", i), Pool: []string{"a", "b"}[i%2], CPUs: 8000, Memory: 32 << 30,
			FreeCPUs: dspool.MilliCPU(r.IntN(3) * 500), FreeMem: dspool.Bytes(r.IntN(3)) << 30}
		if i%8 == 1 || i%8 == 2 {
			n.FreeGPUs = []int{0, 1, 2, 3}[:r.IntN(2)]
		}
		for range 1 + r.IntN(4) {
			n.Releases = append(n.Releases, scheduler.Release{After: time.Duration(r.IntN(240)) * time.Minute,
				CPUs: dspool.MilliCPU(1000 * (1 + r.IntN(4))), Memory: dspool.Bytes(1+r.IntN(8)) << 30})
		}
		nodes[i] = n
	}
	ledger := fairshare.NewLedger(cfg.HalfLife)
	for u := range users {
		ledger.Charge(fairshare.Key{User: fmt.Sprintf("u%04d", u)}, fairshare.Usage{CPUSeconds: r.Float64() * 1e6, GiBSeconds: r.Float64() * 4e6}, now.Add(-time.Duration(r.IntN(7*24))*time.Hour))
	}
	qs := make([]queuedJob, queued)
	cpuShapes := []dspool.MilliCPU{500, 1000, 1000, 2000, 4000, 8000}
	memShapes := []dspool.Bytes{512 << 20, 1 << 30, 2 << 30, 4 << 30, 8 << 30, 16 << 30}
	for i := range qs {
		q := queuedJob{user: fmt.Sprintf("u%04d", r.IntN(users)), priority: r.IntN(4), pool: []string{"a", "b"}[r.IntN(2)],
			cpus: cpuShapes[r.IntN(len(cpuShapes))], mem: memShapes[r.IntN(len(memShapes))]}
		// One in ten has waited past ReserveAfter.
		q.submit = now.Add(-time.Duration(r.IntN(int(cfg.ReserveAfter/time.Second))) * time.Second)
		if r.IntN(10) == 0 {
			q.submit = now.Add(-cfg.ReserveAfter - time.Duration(r.IntN(3600))*time.Second)
		}
		if r.IntN(2) == 0 {
			q.limit = time.Duration(1+r.IntN(480)) * time.Minute
		}
		if r.IntN(10) == 0 {
			q.gpus = 1 + r.IntN(4)
		}
		qs[i] = q
	}
	return nodes, ledger, qs
}
