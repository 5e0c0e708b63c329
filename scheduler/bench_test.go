package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
)

// BenchmarkPlan plans 100,000 queued jobs of mixed shapes on 10,000 nodes of
// two pools: 8 cpus and 32GiB each, one in four with 4 GPUs. In "empty" the
// nodes are free and about a third of the jobs fit; in "nearly-full" each
// node has at most 1 cpu and 2GiB left, so most jobs fit nowhere.
func BenchmarkPlan(b *testing.B) {
	for _, bc := range []struct {
		name string
		used func(r *rand.Rand, n *scheduler.Node)
	}{
		{name: "empty", used: func(*rand.Rand, *scheduler.Node) {}},
		{name: "nearly-full", used: func(r *rand.Rand, n *scheduler.Node) {
			n.FreeCPUs = cpus(float64(r.IntN(3)) / 2)
			n.FreeMem = gib(float64(r.IntN(3)))
			if len(n.FreeGPUs) > 0 {
				n.FreeGPUs = n.FreeGPUs[:r.IntN(2)]
			}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, 8))
			nodes := benchNodes(r, 10_000, bc.used)
			jobs := benchJobs(r, 100_000)
			placed := 0
			for b.Loop() {
				placed = len(scheduler.Plan(nodes, jobs))
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(placed), "placements")
			b.ReportMetric(float64(placed*b.N)/secs, "placements/s")
			b.ReportMetric(float64(len(jobs)*b.N)/secs, "jobs/s")
		})
	}
}

func benchNodes(r *rand.Rand, n int, used func(*rand.Rand, *scheduler.Node)) []scheduler.Node {
	nodes := make([]scheduler.Node, n)
	for i := range nodes {
		nd := scheduler.Node{ID: fmt.Sprintf("node-%05d", i), Pool: []string{"a", "b"}[i%2],
			CPUs: cpus(8), Memory: gib(32), FreeCPUs: cpus(8), FreeMem: gib(32)}
		if i%8 == 1 || i%8 == 2 { // one node in four of each pool
			nd.FreeGPUs = []int{0, 1, 2, 3}
		}
		used(r, &nd)
		nodes[i] = nd
	}
	return nodes
}

func benchJobs(r *rand.Rand, n int) []scheduler.Job {
	cpuShapes := []dspool.MilliCPU{cpus(0.5), cpus(1), cpus(1), cpus(2), cpus(4), cpus(8)}
	memShapes := []dspool.Bytes{gib(0.5), gib(1), gib(2), gib(4), gib(8), gib(16)}
	jobs := make([]scheduler.Job, n)
	for i := range jobs {
		j := scheduler.Job{ID: int64(i), Pool: []string{"a", "b"}[r.IntN(2)], Priority: r.IntN(4),
			CPUs: cpuShapes[r.IntN(len(cpuShapes))], Memory: memShapes[r.IntN(len(memShapes))]}
		if r.IntN(10) == 0 {
			j.GPUs = 1 + r.IntN(4)
		}
		jobs[i] = j
	}
	return jobs
}

// BenchmarkSchedule is BenchmarkPlan's nearly-full case with what fair
// share and reservations add: scores, time limits on half the jobs, one
// job in ten reserving, and running work on every node that ends by its
// time limits within 4 hours.
func BenchmarkSchedule(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	nodes := benchNodes(r, 10_000, func(r *rand.Rand, n *scheduler.Node) {
		n.FreeCPUs = cpus(float64(r.IntN(3)) / 2)
		n.FreeMem = gib(float64(r.IntN(3)))
		if len(n.FreeGPUs) > 0 {
			n.FreeGPUs = n.FreeGPUs[:r.IntN(2)]
		}
		for range 1 + r.IntN(4) {
			n.Releases = append(n.Releases, scheduler.Release{After: time.Duration(r.IntN(240)) * time.Minute, CPUs: cpus(float64(1 + r.IntN(4))), Memory: gib(float64(1 + r.IntN(8)))})
		}
	})
	jobs := benchJobs(r, 100_000)
	for i := range jobs {
		jobs[i].Score = r.Float64() * 1000
		jobs[i].Reserve = r.IntN(10) == 0
		if r.IntN(2) == 0 {
			jobs[i].TimeLimit = time.Duration(1+r.IntN(480)) * time.Minute
		}
		jobs[i].User = fmt.Sprintf("u%d", r.IntN(1000))
	}
	var res scheduler.Result
	for b.Loop() {
		res = scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false)
	}
	b.ReportMetric(float64(len(res.Placements)), "placements")
	b.ReportMetric(float64(len(res.Reservations)), "reservations")
	b.ReportMetric(float64(len(jobs)*b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkEstimate plans the starts of the first 200 jobs of each of two
// pools of 5,000 nearly full nodes, as `dspool queue` does for its answer.
func BenchmarkEstimate(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	nodes := benchNodes(r, 10_000, func(r *rand.Rand, n *scheduler.Node) {
		n.FreeCPUs = cpus(float64(r.IntN(3)) / 2)
		n.FreeMem = gib(float64(r.IntN(3)))
		for range 1 + r.IntN(4) {
			n.Releases = append(n.Releases, scheduler.Release{After: time.Duration(r.IntN(240)) * time.Minute, CPUs: cpus(float64(1 + r.IntN(4))), Memory: gib(float64(1 + r.IntN(8)))})
		}
	})
	jobs := benchJobs(r, 100_000)
	for i := range jobs {
		if r.IntN(2) == 0 {
			jobs[i].TimeLimit = time.Duration(1+r.IntN(480)) * time.Minute
		}
	}
	known := 0
	for b.Loop() {
		known = 0
		for _, s := range scheduler.Estimate(nodes, jobs, 200) {
			if s.Known {
				known++
			}
		}
	}
	b.ReportMetric(float64(known), "known")
}
