package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/dspool/dspool/scheduler"
)

const grace = 30 * time.Second

// busy returns node n with preemptible work rs on it and the pool's grace.
func busy(n scheduler.Node, rs ...scheduler.Running) scheduler.Node {
	n.Running, n.PreemptGrace = rs, grace
	return n
}

// run is a preemptible attempt of c cpus and score s that has run long
// enough to be evicted.
func run(id int64, c float64, s float64) scheduler.Running {
	return scheduler.Running{Job: id, Score: s, CPUs: cpus(c), Memory: gib(1), Ran: time.Hour}
}

func scored(j scheduler.Job, s float64) scheduler.Job { j.Score = s; return j }

func TestPreemption(t *testing.T) {
	young := run(11, 4, 1)
	young.Ran = grace - time.Second
	evicting := run(12, 4, 1)
	evicting.Evicting = true
	tests := []struct {
		name   string
		nodes  []scheduler.Node
		jobs   []scheduler.Job
		want   []scheduler.Preemption
		placed []scheduler.Placement
		res    []scheduler.Reservation
		waits  []scheduler.Wait
	}{{
		name:  "the lowest score goes first, and only as many as needed",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), run(10, 2, 5), run(11, 2, 1), run(12, 2, 3), run(13, 2, 2))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		want:  []scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{11, 13}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n1"}},
	}, {
		name:  "victims the larger ones make needless are dropped",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), run(10, 1, 1), run(11, 4, 2), run(12, 3, 3))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		want:  []scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{11}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n1"}},
	}, {
		name: "the node with the fewest victims",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), run(10, 2, 1), run(11, 2, 1)),
			busy(node("n2", 0, 28), run(20, 4, 2))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		want:  []scheduler.Preemption{{Job: 1, Node: "n2", Victims: []int64{20}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n2"}},
	}, {
		name:  "never a job of an equal or higher score",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), run(10, 4, 10), run(11, 4, 11))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}, {
		name:  "a preemptible job evicts nobody",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), run(10, 4, 1))},
		jobs:  []scheduler.Job{func() scheduler.Job { j := scored(job(1, 4, 1, 0), 10); j.Preemptible = true; return j }()},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}, {
		name:  "an attempt that has not run for the grace is kept",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), young, run(10, 2, 5))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}, {
		name:   "a job that fits elsewhere is placed, and evicts nothing",
		nodes:  []scheduler.Node{busy(node("n1", 0, 28), run(10, 4, 1)), node("n2", 4, 28)},
		jobs:   []scheduler.Job{scored(job(1, 4, 1, 0), 10)},
		placed: []scheduler.Placement{{Job: 1, Node: "n2"}},
	}, {
		name:  "a reservation that starts within the grace is waited for",
		nodes: []scheduler.Node{busy(releasing(node("n1", 0, 28), rel(10*time.Second, 4)), run(10, 4, 1))},
		jobs:  []scheduler.Job{reserving(scored(job(1, 4, 1, 0), 10))},
		res:   []scheduler.Reservation{{Job: 1, Node: "n1", Start: 10 * time.Second, StartKnown: true}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitReservation, Node: "n1", Start: 10 * time.Second, StartKnown: true}},
	}, {
		name:  "a reservation that starts later does not stop an eviction on its node",
		nodes: []scheduler.Node{busy(releasing(node("n1", 0, 28), rel(time.Hour, 4)), run(10, 4, 1))},
		jobs:  []scheduler.Job{reserving(scored(job(1, 4, 1, 0), 10))},
		res:   []scheduler.Reservation{{Job: 1, Node: "n1", Start: time.Hour, StartKnown: true}},
		want:  []scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{10}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n1"}},
	}, {
		name:  "an eviction under way is waited for, not repeated",
		nodes: []scheduler.Node{busy(node("n1", 0, 28), evicting, run(10, 4, 1))},
		jobs:  []scheduler.Job{scored(job(1, 4, 1, 0), 10), scored(job(2, 4, 1, 0), 9), scored(job(3, 4, 1, 0), 8)},
		want:  []scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{}}, {Job: 2, Node: "n1", Victims: []int64{10}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n1"}, {Job: 2, Kind: scheduler.WaitPreempting, Node: "n1"},
			{Job: 3, Kind: scheduler.WaitResources}},
	}, {
		name: "a GPU job evicts the GPU work it needs, not the cpu work beside it",
		nodes: []scheduler.Node{busy(node("n1", 4, 28),
			run(10, 2, 1), func() scheduler.Running { r := run(11, 1, 2); r.GPUs = 2; return r }())},
		jobs:  []scheduler.Job{scored(job(1, 1, 1, 2), 10)},
		want:  []scheduler.Preemption{{Job: 1, Node: "n1", Victims: []int64{11}}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitPreempting, Node: "n1"}},
	}, {
		name:  "a job that asks for a GPU model evicts nothing",
		nodes: []scheduler.Node{busy(node("n1", 4, 28), func() scheduler.Running { r := run(11, 1, 2); r.GPUs = 2; return r }())},
		jobs:  []scheduler.Job{func() scheduler.Job { j := scored(job(1, 1, 1, 2), 10); j.GPUWant.Type = "a100"; return j }()},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}, {
		name: "a node closed to the user is not used",
		nodes: []scheduler.Node{func() scheduler.Node {
			n := busy(node("n1", 0, 28), run(10, 4, 1))
			n.Closed = map[string]bool{"ann": true}
			return n
		}()},
		jobs:  []scheduler.Job{func() scheduler.Job { j := scored(job(1, 4, 1, 0), 10); j.User = "ann"; return j }()},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduler.Schedule(tt.nodes, tt.jobs, scheduler.Quotas{}, true)
			if want := (scheduler.Result{Placements: tt.placed, Reservations: tt.res, Preemptions: tt.want, Waits: tt.waits}); !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestPreemptionProperties plans random pools of preemptible work for
// random queues and checks what every plan must hold: each victim is
// evicted for one job only, has a lower score than that job, has run for
// the grace and is not being evicted already; a job that preempts was not
// placed and is not preemptible; and the victims on the chosen node, with
// what is free there, make the room, without one that is not needed.
func TestPreemptionProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 4))
	for iter := range 2000 {
		var nodes []scheduler.Node
		runs := map[int64]scheduler.Running{}
		id := int64(1000)
		for n := range 1 + rng.IntN(4) {
			nd := busy(node(fmt.Sprintf("n%d", n), float64(rng.IntN(3)), 32))
			for range rng.IntN(5) {
				r := run(id, float64(1+rng.IntN(4)), float64(rng.IntN(10)))
				r.Ran = time.Duration(rng.IntN(60)) * time.Second
				r.Evicting = rng.IntN(8) == 0
				nd.Running = append(nd.Running, r)
				runs[id] = r
				id++
			}
			nodes = append(nodes, nd)
		}
		var jobs []scheduler.Job
		for k := range 1 + rng.IntN(4) {
			j := scored(job(int64(k+1), float64(1+rng.IntN(8)), 1, 0), float64(rng.IntN(12)))
			j.Preemptible = rng.IntN(5) == 0
			jobs = append(jobs, j)
		}
		r := scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false)
		seen := map[int64]bool{}
		for _, pr := range r.Preemptions {
			j := jobs[pr.Job-1]
			if j.Preemptible || slices.ContainsFunc(r.Placements, func(p scheduler.Placement) bool { return p.Job == j.ID }) {
				t.Fatalf("plan %d: job %d preempts but is preemptible or placed: %+v", iter, j.ID, r)
			}
			for _, v := range pr.Victims {
				rv := runs[v]
				if seen[v] || rv.Score >= j.Score || rv.Ran < grace || rv.Evicting {
					t.Fatalf("plan %d: victim %+v of job %+v (seen before %v)", iter, rv, j, seen[v])
				}
				seen[v] = true
			}
		}
		// With one job, the room is the node's free cpus and what is
		// evicted there: enough, and not enough without any one victim.
		if len(jobs) == 1 && len(r.Preemptions) == 1 {
			pr, j := r.Preemptions[0], jobs[0]
			n := nodes[slices.IndexFunc(nodes, func(n scheduler.Node) bool { return n.ID == pr.Node })]
			room := n.FreeCPUs
			for _, x := range n.Running {
				if x.Evicting || slices.Contains(pr.Victims, x.Job) {
					room += x.CPUs
				}
			}
			if room < j.CPUs {
				t.Fatalf("plan %d: %d millicpus made room on %s for job of %d: %+v", iter, room, n.ID, j.CPUs, pr)
			}
			for _, v := range pr.Victims {
				if room-runs[v].CPUs >= j.CPUs {
					t.Fatalf("plan %d: victim %d of %+v is not needed", iter, v, pr)
				}
			}
		}
	}
}
