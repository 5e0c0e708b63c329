// Command gen writes the synthetic trace of testdata/team-week.csv: a
// week of a 20-person data-science team, from a fixed seed, so that the
// same trace comes out every time.
//
//	go run ./autoscale/sim/gen > autoscale/sim/testdata/team-week.csv
//
// The team (times in Europe/Lisbon, week of Monday 2026-06-01):
//
//   - Sessions (pool interactive): on a weekday each person (but one in
//     ten, who is off) logs in between 08:30 and 10:00, works 1-4 h, breaks
//     20-90 min and logs in again for 1-4 h; a quarter come back for
//     30-90 min between 20:00 and 22:30. At weekends about one in six logs
//     in once, for 1-2 h, between 10:00 and 18:00.
//   - Batch (pool batch): on weekdays about 15 small jobs (1-4 cpus, 10-40
//     min) over office hours; every night, bursts between 20:00 and 02:00
//     of 15-50 jobs of one shape (2, 4 or 8 cpus, 4 GiB per cpu, 10-90
//     min), submitted over a minute or so as a script does: 4-6 bursts on
//     weeknights, 2 on Saturday, 1 on Sunday.
//   - GPU (pool gpu): 1-2 bursts a night of 4-12 jobs (1 gpu, 4 cpus, 24
//     GiB, 30-120 min), and on weekdays 2-4 daytime jobs.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale/sim"
)

var users = []string{"ana", "bruno", "carla", "diogo", "elisa", "filipe", "gil", "helena", "ivo", "joana",
	"luis", "marta", "nuno", "olga", "pedro", "rita", "sara", "tiago", "vera", "xavier"}

const gib = dspool.Bytes(1 << 30)

func main() {
	seed := flag.Uint64("seed", 20260601, "random seed")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	if err := sim.WriteTrace(w, week(*seed)); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// g draws the week's arrivals.
type g struct {
	r   *rand.Rand
	out []sim.Arrival
}

// between returns a whole-second duration in [lo, hi).
func (g *g) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(g.r.Int64N(int64((hi-lo)/time.Second)))*time.Second
}

func (g *g) session(at time.Time, user string, d time.Duration) {
	g.out = append(g.out, sim.Arrival{At: at, Kind: sim.KindSession, Pool: "interactive", User: user, Duration: d})
}

func (g *g) job(at time.Time, pool, user string, cpus int, mem dspool.Bytes, gpus int, d time.Duration) {
	g.out = append(g.out, sim.Arrival{At: at, Kind: sim.KindJob, Pool: pool, User: user,
		CPUs: dspool.MilliCPU(cpus * 1000), Memory: mem, GPUs: gpus, Duration: d})
}

func (g *g) user() string { return users[g.r.IntN(len(users))] }

// burst submits n jobs of one shape from about at, a few seconds apart.
func (g *g) burst(at time.Time, pool string, n, cpus int, mem dspool.Bytes, gpus int, lo, hi time.Duration) {
	u := g.user()
	for range n {
		at = at.Add(g.between(0, 4*time.Second))
		g.job(at, pool, u, cpus, mem, gpus, g.between(lo, hi))
	}
}

func week(seed uint64) *sim.Trace {
	lisbon, err := time.LoadLocation("Europe/Lisbon")
	if err != nil {
		panic(err)
	}
	monday := time.Date(2026, 6, 1, 0, 0, 0, 0, lisbon)
	g := &g{r: rand.New(rand.NewPCG(seed, 0))}
	for day := range 7 {
		d := monday.AddDate(0, 0, day)
		at := func(h time.Duration) time.Time { return d.Add(h) }
		weekend := day >= 5
		for _, u := range users {
			switch {
			case weekend:
				if g.r.Float64() < 1.0/6 {
					g.session(at(g.between(10*time.Hour, 18*time.Hour)), u, g.between(time.Hour, 2*time.Hour))
				}
				continue
			case g.r.Float64() < 0.1:
				continue // a day off
			}
			login := at(g.between(8*time.Hour+30*time.Minute, 10*time.Hour))
			first := g.between(time.Hour, 4*time.Hour)
			g.session(login, u, first)
			again := login.Add(first + g.between(20*time.Minute, 90*time.Minute))
			g.session(again, u, g.between(time.Hour, 4*time.Hour))
			if g.r.Float64() < 0.25 {
				g.session(at(g.between(20*time.Hour, 22*time.Hour+30*time.Minute)), u, g.between(30*time.Minute, 90*time.Minute))
			}
		}
		// Batch: small jobs by day, bursts by night.
		bursts := 4 + g.r.IntN(3)
		switch day {
		case 5:
			bursts = 2
		case 6:
			bursts = 1
		}
		if !weekend {
			for range 10 + g.r.IntN(11) {
				cpus := 1 + g.r.IntN(4)
				g.job(at(g.between(9*time.Hour, 18*time.Hour)), "batch", g.user(), cpus, dspool.Bytes(cpus)*4*gib, 0,
					g.between(10*time.Minute, 40*time.Minute))
			}
		}
		for range bursts {
			cpus := []int{2, 4, 8}[g.r.IntN(3)]
			g.burst(at(g.between(20*time.Hour, 26*time.Hour)), "batch", 15+g.r.IntN(36), cpus, dspool.Bytes(cpus)*4*gib, 0,
				10*time.Minute, 90*time.Minute)
		}
		// GPU: bursts by night, a few jobs by day.
		for range 1 + g.r.IntN(2) {
			g.burst(at(g.between(20*time.Hour, 26*time.Hour)), "gpu", 4+g.r.IntN(9), 4, 24*gib, 1, 30*time.Minute, 120*time.Minute)
		}
		if !weekend {
			for range 2 + g.r.IntN(3) {
				g.job(at(g.between(9*time.Hour, 18*time.Hour)), "gpu", g.user(), 4, 24*gib, 1, g.between(20*time.Minute, 90*time.Minute))
			}
		}
	}
	slices.SortStableFunc(g.out, func(a, b sim.Arrival) int { return a.At.Compare(b.At) })
	return &sim.Trace{Start: monday, Arrivals: g.out}
}
