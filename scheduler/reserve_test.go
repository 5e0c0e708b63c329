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

func releasing(n scheduler.Node, rs ...scheduler.Release) scheduler.Node {
	n.Releases = rs
	return n
}

func rel(after time.Duration, c float64) scheduler.Release {
	return scheduler.Release{After: after, CPUs: cpus(c)}
}

func reserving(j scheduler.Job) scheduler.Job { j.Reserve = true; return j }

func limited(j scheduler.Job, d time.Duration) scheduler.Job { j.TimeLimit = d; return j }

func TestReservations(t *testing.T) {
	// n1 has 2 cpus free and gets 6 back in 10m; n2 has 4 free and gets 4
	// back in 5m: an 8-cpu job can start on n2 in 5m.
	nodes := []scheduler.Node{releasing(node("n1", 2, 32), rel(10*time.Minute, 6)), releasing(node("n2", 4, 32), rel(5*time.Minute, 4))}
	tests := []struct {
		name  string
		nodes []scheduler.Node
		jobs  []scheduler.Job
		want  []scheduler.Placement
		res   []scheduler.Reservation
		waits []scheduler.Wait
	}{{
		name:  "without a reservation small jobs take every node",
		nodes: nodes,
		jobs:  []scheduler.Job{job(1, 8, 1, 0), job(2, 1, 1, 0), job(3, 1, 1, 0), job(4, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 2, Node: "n1"}, {Job: 3, Node: "n1"}, {Job: 4, Node: "n2"}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitResources}},
	}, {
		name:  "a reservation keeps its node from work that would delay it",
		nodes: nodes,
		jobs: []scheduler.Job{reserving(job(1, 8, 1, 0)), job(2, 1, 1, 0), job(3, 1, 1, 0), job(4, 1, 1, 0),
			limited(job(5, 1, 1, 0), 4*time.Minute), limited(job(6, 2, 1, 0), 6*time.Minute), limited(job(7, 3, 1, 0), 5*time.Minute)},
		want: []scheduler.Placement{{Job: 2, Node: "n1"}, {Job: 3, Node: "n1"}, {Job: 5, Node: "n2"}, {Job: 7, Node: "n2"}},
		res:  []scheduler.Reservation{{Job: 1, Node: "n2", Start: 5 * time.Minute, StartKnown: true}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitReservation, Node: "n2", Start: 5 * time.Minute, StartKnown: true},
			{Job: 4, Kind: scheduler.WaitReserved, Node: "n2", For: 1}, {Job: 6, Kind: scheduler.WaitReserved, Node: "n2", For: 1}},
	}, {
		name:  "work past the start may take what the node has to spare then",
		nodes: []scheduler.Node{releasing(node("n1", 4, 32), rel(5*time.Minute, 4))},
		jobs:  []scheduler.Job{reserving(job(1, 6, 1, 0)), job(2, 1, 1, 0), job(3, 2, 1, 0), job(4, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 2, Node: "n1"}, {Job: 4, Node: "n1"}},
		res:   []scheduler.Reservation{{Job: 1, Node: "n1", Start: 5 * time.Minute, StartKnown: true}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitReservation, Node: "n1", Start: 5 * time.Minute, StartKnown: true},
			{Job: 3, Kind: scheduler.WaitReserved, Node: "n1", For: 1}},
	}, {
		name:  "work without a time limit makes the start unknown, and no time limit ends before it",
		nodes: []scheduler.Node{node("n1", 4, 32)},
		jobs:  []scheduler.Job{reserving(job(1, 8, 1, 0)), limited(job(2, 1, 1, 0), time.Second)},
		res:   []scheduler.Reservation{{Job: 1, Node: "n1"}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitReservation, Node: "n1"}, {Job: 2, Kind: scheduler.WaitReserved, Node: "n1", For: 1}},
	}, {
		name:  "a reserving job goes first, then the higher score, then priority",
		nodes: []scheduler.Node{node("n1", 3, 32)},
		jobs: []scheduler.Job{withPriority(job(1, 1, 1, 0), 100), func() scheduler.Job { j := job(2, 1, 1, 0); j.Score = 5; return j }(),
			reserving(job(3, 1, 1, 0)), job(4, 1, 1, 0)},
		want:  []scheduler.Placement{{Job: 3, Node: "n1"}, {Job: 2, Node: "n1"}, {Job: 1, Node: "n1"}},
		waits: []scheduler.Wait{{Job: 4, Kind: scheduler.WaitResources}},
	}, {
		name:  "jobs placed earlier in the plan release by their time limits",
		nodes: []scheduler.Node{node("n1", 4, 32), node("n2", 2, 32)},
		jobs:  []scheduler.Job{limited(job(1, 2, 1, 0), time.Hour), limited(job(2, 2, 1, 0), time.Minute), reserving(job(3, 4, 1, 0))},
		// Job 3 goes first, fits n1 and takes it; 1 and 2 take n2 and wait.
		want:  []scheduler.Placement{{Job: 3, Node: "n1"}, {Job: 1, Node: "n2"}},
		waits: []scheduler.Wait{{Job: 2, Kind: scheduler.WaitResources}},
	}, {
		name:  "a node closed to the user is not reserved for them",
		nodes: []scheduler.Node{func() scheduler.Node { n := node("n1", 4, 32); n.Closed = map[string]bool{"ann": true}; return n }(), node("n2", 2, 32)},
		jobs:  []scheduler.Job{func() scheduler.Job { j := reserving(job(1, 8, 1, 0)); j.User = "ann"; return j }()},
		res:   []scheduler.Reservation{{Job: 1, Node: "n2"}},
		waits: []scheduler.Wait{{Job: 1, Kind: scheduler.WaitReservation, Node: "n2"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := scheduler.Schedule(tc.nodes, tc.jobs, scheduler.Quotas{}, true)
			if !reflect.DeepEqual(got.Placements, tc.want) {
				t.Errorf("placements: got %+v, want %+v", got.Placements, tc.want)
			}
			if !reflect.DeepEqual(got.Reservations, tc.res) {
				t.Errorf("reservations: got %+v, want %+v", got.Reservations, tc.res)
			}
			if !reflect.DeepEqual(got.Waits, tc.waits) {
				t.Errorf("waits: got %+v, want %+v", got.Waits, tc.waits)
			}
			if plain := scheduler.Plan(tc.nodes, tc.jobs); !reflect.DeepEqual(plain, got.Placements) {
				t.Errorf("Plan and Schedule differ: %+v and %+v", plain, got.Placements)
			}
		})
	}
}

// TestReservationsAtMost caps the reservations of one pool.
func TestReservationsAtMost(t *testing.T) {
	var nodes []scheduler.Node
	var jobs []scheduler.Job
	for i := range scheduler.MaxReservations + 2 {
		nodes = append(nodes, node(fmt.Sprintf("n%02d", i), 1, 32))
		jobs = append(jobs, reserving(job(int64(i), 4, 1, 0)))
	}
	got := scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, true)
	if len(got.Reservations) != scheduler.MaxReservations {
		t.Errorf("got %d reservations, want %d", len(got.Reservations), scheduler.MaxReservations)
	}
	if w := got.Waits[len(got.Waits)-1]; w.Kind != scheduler.WaitResources {
		t.Errorf("the last job's wait: got %+v, want resources", w)
	}
}

// TestReservationsNeverDelayed plans random clusters with reserving jobs
// and time limits, and checks that every reservation with a known start
// still has room then: what is free on its node after the plan, plus what
// the node's running work and the jobs placed on it give back by the start.
func TestReservationsNeverDelayed(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	checked := 0
	for round := range 300 {
		nodes, jobs := randomCluster(r, 1+r.IntN(20), r.IntN(200))
		for i := range nodes {
			for range r.IntN(3) {
				nodes[i].Releases = append(nodes[i].Releases, scheduler.Release{After: time.Duration(r.IntN(60)) * time.Minute,
					CPUs: cpus(float64(r.IntN(4))), Memory: gib(float64(r.IntN(8)))})
			}
		}
		for i := range jobs {
			jobs[i].Reserve = r.IntN(10) == 0
			if r.IntN(2) == 0 {
				jobs[i].TimeLimit = time.Duration(1+r.IntN(90)) * time.Minute
			}
		}
		got := scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false)
		if err := check(nodes, jobs, got.Placements); err != nil && !slices.ContainsFunc(jobs, func(j scheduler.Job) bool { return j.Reserve }) {
			t.Fatalf("round %d: %v", round, err)
		}
		byID := map[int64]scheduler.Job{}
		for _, j := range jobs {
			byID[j.ID] = j
		}
		for _, rv := range got.Reservations {
			if !rv.StartKnown {
				continue
			}
			checked++
			n := nodes[slices.IndexFunc(nodes, func(n scheduler.Node) bool { return n.ID == rv.Node })]
			c, m, g := n.FreeCPUs, n.FreeMem, len(n.FreeGPUs)
			for _, x := range n.Releases {
				if x.After <= rv.Start {
					c, m, g = c+x.CPUs, m+x.Memory, g+x.GPUs
				}
			}
			for _, p := range got.Placements {
				if p.Node != rv.Node {
					continue
				}
				j := byID[p.Job]
				c, m, g = c-j.CPUs, m-j.Memory, g-j.GPUs
				if j.TimeLimit > 0 && j.TimeLimit <= rv.Start {
					c, m, g = c+j.CPUs, m+j.Memory, g+j.GPUs
				}
			}
			if j := byID[rv.Job]; c < j.CPUs || m < j.Memory || g < j.GPUs {
				t.Fatalf("round %d: reservation %+v of job %+v has %v cpus, %v, %d GPUs at its start", round, rv, j, c, m, g)
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d reservations with a known start were checked; want at least 100", checked)
	}
}
