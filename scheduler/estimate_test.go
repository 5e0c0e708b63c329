package scheduler_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/dspool/dspool/scheduler"
)

func TestEstimate(t *testing.T) {
	m := time.Minute
	// n1 is full and gets 4 cpus back in 10 minutes.
	n1 := releasing(node("n1", 0, 32), rel(10*m, 4))
	tests := []struct {
		name  string
		nodes []scheduler.Node
		jobs  []scheduler.Job
		first int
		want  map[int64]scheduler.Start
	}{{
		name:  "each job takes the first room that lasts its time limit, after the jobs ahead",
		nodes: []scheduler.Node{n1},
		jobs:  []scheduler.Job{limited(job(1, 2, 1, 0), 5*m), limited(job(2, 4, 1, 0), time.Hour), job(3, 2, 1, 0)},
		first: 10,
		want: map[int64]scheduler.Start{1: {At: 10 * m, Known: true}, 2: {At: 15 * m, Known: true},
			3: {At: 75 * m, Known: true}},
	}, {
		name:  "a short job fits the gap before a held start",
		nodes: []scheduler.Node{node("n1", 2, 32)},
		jobs:  []scheduler.Job{limited(job(1, 4, 1, 0), time.Hour), limited(job(2, 2, 1, 0), 5*m)},
		first: 10,
		// Job 1 never has 4 cpus: n1 has 2 and gets none back.
		want: map[int64]scheduler.Start{1: {}, 2: {At: 0, Known: true}},
	}, {
		name:  "only the first jobs of each pool",
		nodes: []scheduler.Node{n1, withPool(node("b1", 8, 32), "b")},
		jobs:  []scheduler.Job{job(1, 1, 1, 0), job(2, 1, 1, 0), inPool(job(3, 1, 1, 0), "b"), inPool(job(4, 1, 1, 0), "b")},
		first: 1,
		want:  map[int64]scheduler.Start{1: {At: 10 * m, Known: true}, 3: {At: 0, Known: true}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scheduler.Estimate(tc.nodes, tc.jobs, tc.first); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestEstimateAgreesWithReservations: a reserving job's estimate is its
// reservation's start.
func TestEstimateAgreesWithReservations(t *testing.T) {
	nodes := []scheduler.Node{releasing(node("n1", 2, 32), rel(10*time.Minute, 6)), releasing(node("n2", 4, 32), rel(5*time.Minute, 4))}
	jobs := []scheduler.Job{reserving(job(1, 8, 1, 0)), job(2, 1, 1, 0)}
	res := scheduler.Schedule(nodes, jobs, scheduler.Quotas{}, false)
	est := scheduler.Estimate(nodes, jobs, 10)
	if len(res.Reservations) != 1 || est[1] != (scheduler.Start{At: res.Reservations[0].Start, Known: true}) {
		t.Errorf("reservations %+v, estimate %+v: want the same start", res.Reservations, est[1])
	}
}
