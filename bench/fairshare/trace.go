package main

import (
	"math/rand/v2"
	"time"

	"github.com/dspool/dspool"
)

// profile is how one user submits work.
type profile struct {
	user   string
	shares int
	heavy  bool // floods: submits a batch every weekday morning, more than its share
	// perDay is the jobs of a batch (heavy) or the mean jobs per weekday
	// (light), in office hours.
	perDay int
	large  float64 // the part of its jobs that take a whole node
	// small jobs: cpus from 1 to maxCPUs, running minMin to maxMin minutes.
	maxCPUs        int
	minMin, maxMin int
}

// team is a team of four users who flood the pool with different shapes of
// work (one with twice the share, one with whole-node jobs only), each
// asking every weekday for about twice what its share of the pool can run
// in a day, and four who submit now and then.
var team = []profile{
	{user: "ana", shares: 2, heavy: true, perDay: 200, maxCPUs: 2, minMin: 120, maxMin: 360},
	{user: "ben", shares: 1, heavy: true, perDay: 50, maxCPUs: 4, minMin: 120, maxMin: 360},
	{user: "cho", shares: 1, heavy: true, perDay: 20, large: 1, minMin: 120, maxMin: 360},
	{user: "dev", shares: 1, heavy: true, perDay: 200, maxCPUs: 1, minMin: 60, maxMin: 300},
	{user: "eli", shares: 1, perDay: 8, large: 0.3, maxCPUs: 2, minMin: 10, maxMin: 60},
	{user: "fay", shares: 1, perDay: 8, large: 0.3, maxCPUs: 2, minMin: 10, maxMin: 60},
	{user: "gus", shares: 1, perDay: 8, large: 0.3, maxCPUs: 2, minMin: 10, maxMin: 60},
	{user: "hal", shares: 1, perDay: 8, large: 0.3, maxCPUs: 2, minMin: 10, maxMin: 60},
}

// Cluster is the fixed pool the trace is replayed on.
const (
	nodeCount = 8
	nodeCPUs  = 8
	gibPerCPU = 4
)

// tjob is one job of the trace.
type tjob struct {
	id     int64
	user   string
	submit time.Time
	cpus   int
	run    time.Duration // how long it runs
	limit  time.Duration // its --time: what the user asked for, more than it runs
	large  bool
}

// limits is how far users' --time overshoots what their jobs run: a job
// running d asks for d times a factor drawn from [lo, hi), rounded up to 5
// minutes.
type limits struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// week makes the trace of days days from Monday start: deterministic for
// a seed.
func week(start time.Time, days int, seed uint64, lim limits) []tjob {
	r := rand.New(rand.NewPCG(seed, seed+1))
	var out []tjob
	add := func(p profile, at time.Time) {
		j := tjob{user: p.user, submit: at}
		if r.Float64() < p.large {
			j.cpus, j.large = nodeCPUs, true
		} else {
			j.cpus = 1 + r.IntN(p.maxCPUs)
		}
		j.run = time.Duration(p.minMin+r.IntN(p.maxMin-p.minMin+1)) * time.Minute
		j.limit = (time.Duration(float64(j.run)*(lim.Lo+(lim.Hi-lim.Lo)*r.Float64())) + 5*time.Minute - 1).Truncate(5 * time.Minute)
		out = append(out, j)
	}
	for d := range days {
		day := start.AddDate(0, 0, d)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for _, p := range team {
			if p.heavy {
				at := day.Add(9*time.Hour + time.Duration(r.IntN(60))*time.Minute)
				for range p.perDay {
					add(p, at)
				}
				continue
			}
			for range r.IntN(2*p.perDay + 1) {
				add(p, day.Add(9*time.Hour+time.Duration(r.IntN(9*60))*time.Minute))
			}
		}
	}
	sortBySubmit(out)
	for i := range out {
		out[i].id = int64(i + 1)
	}
	return out
}

func (j *tjob) mem() dspool.Bytes { return dspool.Bytes(j.cpus*gibPerCPU) << 30 }
