package scheduler_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/scheduler"
)

func cpus(n float64) dspool.MilliCPU { return dspool.MilliCPU(n * 1000) }
func gib(n float64) dspool.Bytes     { return dspool.Bytes(n * (1 << 30)) }

// node returns an 8-cpu 32GiB node of pool "a" with the given free amounts.
func node(id string, freeCPUs float64, freeMem float64, freeGPUs ...int) scheduler.Node {
	return scheduler.Node{ID: id, Pool: "a", CPUs: cpus(8), Memory: gib(32),
		FreeCPUs: cpus(freeCPUs), FreeMem: gib(freeMem), FreeGPUs: freeGPUs}
}

// job returns a priority-0 job of pool "a".
func job(id int64, c float64, memGiB float64, gpus int) scheduler.Job {
	return scheduler.Job{ID: id, Pool: "a", CPUs: cpus(c), Memory: gib(memGiB), GPUs: gpus}
}

func withPool(n scheduler.Node, pool string) scheduler.Node { n.Pool = pool; return n }
func withPriority(j scheduler.Job, p int) scheduler.Job     { j.Priority = p; return j }
func inPool(j scheduler.Job, pool string) scheduler.Job     { j.Pool = pool; return j }

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		nodes []scheduler.Node
		jobs  []scheduler.Job
		want  []scheduler.Placement
	}{{
		name:  "priority first, then oldest first",
		nodes: []scheduler.Node{node("n1", 2, 32)},
		jobs:  []scheduler.Job{job(1, 1, 1, 0), withPriority(job(3, 1, 1, 0), 5), withPriority(job(2, 1, 1, 0), 5)},
		want:  []scheduler.Placement{{Job: 2, Node: "n1"}, {Job: 3, Node: "n1"}},
	}, {
		name:  "a job only goes to its own pool",
		nodes: []scheduler.Node{node("a1", 8, 32), withPool(node("b1", 1, 32), "b")},
		jobs:  []scheduler.Job{inPool(job(1, 1, 1, 0), "b"), inPool(job(2, 1, 1, 0), "b"), inPool(job(3, 1, 1, 0), "c")},
		want:  []scheduler.Placement{{Job: 1, Node: "b1"}},
	}, {
		name: "a node closed to a job's user is passed over, and its shape still fits others",
		nodes: []scheduler.Node{func() scheduler.Node { n := node("used", 2, 32); n.Closed = map[string]bool{"ann": true}; return n }(),
			node("empty", 4, 32)},
		jobs: []scheduler.Job{{ID: 1, Pool: "a", CPUs: cpus(1), Memory: gib(1), User: "ann"}, {ID: 2, Pool: "a", CPUs: cpus(1), Memory: gib(1), User: "bob"}},
		want: []scheduler.Placement{{Job: 1, Node: "empty"}, {Job: 2, Node: "used"}},
	}, {
		name:  "best fit fills the used node",
		nodes: []scheduler.Node{node("empty", 4, 32), node("used", 2, 32)},
		jobs:  []scheduler.Job{job(1, 1, 1, 0), job(2, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "used"}, {Job: 2, Node: "used"}},
	}, {
		name:  "fewest nodes",
		nodes: []scheduler.Node{node("c", 4, 32), node("b", 4, 32), node("a", 4, 32)},
		jobs:  []scheduler.Job{job(1, 2, 1, 0), job(2, 2, 1, 0), job(3, 2, 1, 0), job(4, 2, 1, 0)},
		want: []scheduler.Placement{{Job: 1, Node: "a"}, {Job: 2, Node: "a"},
			{Job: 3, Node: "b"}, {Job: 4, Node: "b"}},
	}, {
		name:  "least free memory breaks a tie on cpus",
		nodes: []scheduler.Node{node("a", 4, 16), node("b", 4, 8)},
		jobs:  []scheduler.Job{job(1, 1, 4, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "b"}},
	}, {
		name:  "best fit skips a node short of memory",
		nodes: []scheduler.Node{node("a", 8, 16), node("b", 2, 2), node("c", 4, 8)},
		jobs:  []scheduler.Job{job(1, 1, 4, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "c"}},
	}, {
		name:  "memory limits",
		nodes: []scheduler.Node{node("n1", 8, 4)},
		jobs:  []scheduler.Job{job(1, 1, 3, 0), job(2, 1, 3, 0), job(3, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "n1"}, {Job: 3, Node: "n1"}},
	}, {
		name:  "lowest free GPU indices",
		nodes: []scheduler.Node{node("g", 8, 32, 1, 3)},
		jobs:  []scheduler.Job{job(1, 1, 1, 1), job(2, 1, 1, 1), job(3, 1, 1, 1)},
		want:  []scheduler.Placement{{Job: 1, Node: "g", GPUs: []int{1}}, {Job: 2, Node: "g", GPUs: []int{3}}},
	}, {
		name:  "lowest free GPU indices even when listed out of order",
		nodes: []scheduler.Node{node("g", 8, 32, 3, 1)},
		jobs:  []scheduler.Job{job(1, 1, 1, 1)},
		want:  []scheduler.Placement{{Job: 1, Node: "g", GPUs: []int{1}}},
	}, {
		name:  "several GPUs",
		nodes: []scheduler.Node{node("g", 8, 32, 0, 2, 5, 7)},
		jobs:  []scheduler.Job{job(1, 1, 1, 3), job(2, 1, 1, 1)},
		want:  []scheduler.Placement{{Job: 1, Node: "g", GPUs: []int{0, 2, 5}}, {Job: 2, Node: "g", GPUs: []int{7}}},
	}, {
		name:  "fewest free GPUs before fewest free cpus",
		nodes: []scheduler.Node{node("g4", 1, 32, 0, 1, 2, 3), node("g1", 8, 32, 2)},
		jobs:  []scheduler.Job{job(1, 1, 1, 1)},
		want:  []scheduler.Placement{{Job: 1, Node: "g1", GPUs: []int{2}}},
	}, {
		name:  "a job without GPUs stays off free GPUs",
		nodes: []scheduler.Node{node("gpu", 1, 32, 0), node("cpu", 8, 32)},
		jobs:  []scheduler.Job{job(1, 1, 1, 0), job(2, 7, 1, 0), job(3, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "cpu"}, {Job: 2, Node: "cpu"}, {Job: 3, Node: "gpu"}},
	}, {
		name:  "a job needing GPUs skips nodes without",
		nodes: []scheduler.Node{node("cpu", 8, 32)},
		jobs:  []scheduler.Job{job(1, 1, 1, 1)},
		want:  nil,
	}, {
		name:  "a job too big is skipped and smaller later jobs still place",
		nodes: []scheduler.Node{node("n1", 4, 32)},
		jobs:  []scheduler.Job{withPriority(job(1, 8, 1, 0), 9), withPriority(job(2, 4, 64, 0), 9), job(3, 2, 1, 0), job(4, 3, 1, 0), job(5, 2, 1, 0)},
		want:  []scheduler.Placement{{Job: 3, Node: "n1"}, {Job: 5, Node: "n1"}},
	}, {
		name:  "a job asking for nothing fits a full node",
		nodes: []scheduler.Node{node("n1", 0, 0)},
		jobs:  []scheduler.Job{job(1, 0, 0, 0)},
		want:  []scheduler.Placement{{Job: 1, Node: "n1"}},
	}, {
		name:  "negative requests are never placed",
		nodes: []scheduler.Node{node("n1", 4, 32, 0)},
		jobs:  []scheduler.Job{job(1, -1, 1, 0), job(2, 1, -1, 0), job(3, 1, 1, -1)},
		want:  nil,
	}, {
		name: "no nodes",
		jobs: []scheduler.Job{job(1, 1, 1, 0)},
		want: nil,
	}, {
		name:  "no jobs",
		nodes: []scheduler.Node{node("n1", 4, 32)},
		want:  nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduler.Plan(tt.nodes, tt.jobs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPlanDoesNotModifyInputs(t *testing.T) {
	nodes, jobs := randomCluster(rand.New(rand.NewPCG(1, 2)), 50, 200)
	nodesBefore, jobsBefore := cloneNodes(nodes), slices.Clone(jobs)
	got := scheduler.Plan(nodes, jobs)
	if len(got) == 0 {
		t.Fatal("Plan placed nothing: the test shows nothing")
	}
	if !reflect.DeepEqual(nodes, nodesBefore) {
		t.Errorf("Plan modified nodes")
	}
	if !reflect.DeepEqual(jobs, jobsBefore) {
		t.Errorf("Plan modified jobs")
	}
	// The GPU slices handed out must not alias the nodes' slices.
	for _, p := range got {
		for i := range p.GPUs {
			p.GPUs[i] = -1
		}
	}
	if !reflect.DeepEqual(nodes, nodesBefore) {
		t.Errorf("placement GPUs share memory with nodes' FreeGPUs")
	}
}

func TestPlanDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		nodes, jobs := randomCluster(r, 40, 300)
		want := scheduler.Plan(nodes, jobs)
		if got := scheduler.Plan(nodes, jobs); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: second Plan differs:\ngot  %+v\nwant %+v", round, got, want)
		}
		// IDs are unique, so input order must not matter either.
		r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
		r.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		if got := scheduler.Plan(nodes, jobs); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Plan of shuffled input differs:\ngot  %+v\nwant %+v", round, got, want)
		}
	}
}

// TestPlanProperties checks random plans against the invariants and against
// reference, which restates the rules in the slowest obvious way.
func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 200 {
		nodes, jobs := randomCluster(r, 1+r.IntN(60), r.IntN(400))
		got := scheduler.Plan(nodes, jobs)
		if err := check(nodes, jobs, got); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if want := reference(nodes, jobs); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Plan differs from reference:\ngot  %+v\nwant %+v", round, got, want)
		}
	}
}

// TestPlanClosedProperties is TestPlanProperties with nodes closed to some
// users.
func TestPlanClosedProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	users := []string{"", "ann", "bob"}
	for round := range 200 {
		nodes, jobs := randomCluster(r, 1+r.IntN(60), r.IntN(400))
		for i := range nodes {
			if r.IntN(3) == 0 {
				nodes[i].Closed = map[string]bool{users[1+r.IntN(2)]: true}
			}
		}
		for i := range jobs {
			jobs[i].User = users[r.IntN(3)]
		}
		got := scheduler.Plan(nodes, jobs)
		if err := check(nodes, jobs, got); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if want := reference(nodes, jobs); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: Plan differs from reference:\ngot  %+v\nwant %+v", round, got, want)
		}
	}
}

// check verifies that plan oversubscribes no node, gives no GPU twice, keeps
// every job in its pool, and leaves no job unplaced that still fits a node.
func check(nodes []scheduler.Node, jobs []scheduler.Job, plan []scheduler.Placement) error {
	left := map[string]*scheduler.Node{}
	for _, n := range cloneNodes(nodes) {
		left[n.ID] = &n
	}
	byID := map[int64]scheduler.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	placed := map[int64]bool{}
	for _, p := range plan {
		j, n := byID[p.Job], left[p.Node]
		switch {
		case placed[p.Job]:
			return fmt.Errorf("job %d placed twice", p.Job)
		case n == nil:
			return fmt.Errorf("job %d placed on unknown node %q", p.Job, p.Node)
		case n.Pool != j.Pool:
			return fmt.Errorf("job %d of pool %q placed on node %s of pool %q", j.ID, j.Pool, n.ID, n.Pool)
		case n.Closed[j.User]:
			return fmt.Errorf("job %d of user %s placed on node %s, which is closed to them", j.ID, j.User, n.ID)
		case len(p.GPUs) != j.GPUs:
			return fmt.Errorf("job %d got GPUs %v, want %d of them", j.ID, p.GPUs, j.GPUs)
		}
		placed[p.Job] = true
		n.FreeCPUs -= j.CPUs
		n.FreeMem -= j.Memory
		for _, g := range p.GPUs {
			i := slices.Index(n.FreeGPUs, g)
			if i < 0 {
				return fmt.Errorf("job %d got GPU %d of node %s, which is not free", j.ID, g, n.ID)
			}
			n.FreeGPUs = slices.Delete(n.FreeGPUs, i, i+1)
		}
		if n.FreeCPUs < 0 || n.FreeMem < 0 {
			return fmt.Errorf("node %s oversubscribed after job %d: %d cpus, %d memory free", n.ID, j.ID, n.FreeCPUs, n.FreeMem)
		}
	}
	for _, j := range jobs {
		if placed[j.ID] {
			continue
		}
		for _, n := range left {
			if fits(*n, j) {
				return fmt.Errorf("job %d left queued but fits what is left of node %s", j.ID, n.ID)
			}
		}
	}
	return nil
}

func fits(n scheduler.Node, j scheduler.Job) bool {
	return n.Pool == j.Pool && !n.Closed[j.User] && j.CPUs >= 0 && j.Memory >= 0 && j.GPUs >= 0 &&
		n.FreeCPUs >= j.CPUs && n.FreeMem >= j.Memory && len(n.FreeGPUs) >= j.GPUs
}

// reference is Plan written as the package doc reads: for each job in queue
// order, scan every node and keep the best by the score.
func reference(nodes []scheduler.Node, jobs []scheduler.Job) []scheduler.Placement {
	nodes = cloneNodes(nodes)
	jobs = slices.Clone(jobs)
	slices.SortStableFunc(jobs, func(a, b scheduler.Job) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.ID, b.ID))
	})
	score := func(n *scheduler.Node) []int64 {
		return []int64{int64(len(n.FreeGPUs)), int64(n.FreeCPUs), int64(n.FreeMem)}
	}
	var out []scheduler.Placement
	for _, j := range jobs {
		var best *scheduler.Node
		for i := range nodes {
			n := &nodes[i]
			if !fits(*n, j) {
				continue
			}
			if best == nil || cmp.Or(slices.Compare(score(n), score(best)), cmp.Compare(n.ID, best.ID)) < 0 {
				best = n
			}
		}
		if best == nil {
			continue
		}
		best.FreeCPUs -= j.CPUs
		best.FreeMem -= j.Memory
		var gpus []int
		if j.GPUs > 0 {
			gpus = slices.Clone(best.FreeGPUs[:j.GPUs])
			best.FreeGPUs = best.FreeGPUs[j.GPUs:]
		}
		out = append(out, scheduler.Placement{Job: j.ID, Node: best.ID, GPUs: gpus})
	}
	return out
}

func cloneNodes(nodes []scheduler.Node) []scheduler.Node {
	out := slices.Clone(nodes)
	for i := range out {
		out[i].FreeGPUs = slices.Clone(out[i].FreeGPUs)
	}
	return out
}

// randomCluster returns nodes in pools a, b and c, partly used, and jobs of
// coarse shapes so that ties are common; node and job IDs are unique.
func randomCluster(r *rand.Rand, nNodes, nJobs int) ([]scheduler.Node, []scheduler.Job) {
	pools := []string{"a", "b", "c"}
	nodes := make([]scheduler.Node, nNodes)
	for i := range nodes {
		n := scheduler.Node{ID: fmt.Sprintf("n%03d", r.IntN(1000)*1000+i), Pool: pools[r.IntN(3)],
			CPUs: cpus(float64(int(2) << r.IntN(3))), Memory: gib(float64(int(4) << r.IntN(3)))}
		n.FreeCPUs = dspool.MilliCPU(r.Int64N(int64(n.CPUs)/500+1) * 500)
		n.FreeMem = dspool.Bytes(r.Int64N(int64(n.Memory)/(1<<30)+1)) * (1 << 30)
		if r.IntN(3) == 0 {
			for g := range 4 {
				if r.IntN(3) > 0 {
					n.FreeGPUs = append(n.FreeGPUs, g)
				}
			}
		}
		nodes[i] = n
	}
	jobs := make([]scheduler.Job, nJobs)
	for i, id := range r.Perm(nJobs) {
		jobs[i] = scheduler.Job{ID: int64(id), Pool: pools[r.IntN(3)], Priority: r.IntN(3),
			CPUs: cpus(float64(r.IntN(9)) / 2), Memory: gib(float64(r.IntN(10))), GPUs: max(0, r.IntN(6)-3)}
	}
	return nodes, jobs
}
