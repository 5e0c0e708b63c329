// Command fairshare measures fair share and reservations: a simulated
// week of a team of eight sharing a fixed pool (four flood it, four submit
// now and then) replayed through package fairshare and the scheduler with
// simulated time, under the queue order of before (priority, then age),
// fair share alone, and fair share with reservations; and the time of one
// scheduling pass with both at 100,000 queued jobs. See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/fairshare"
)

// The time limits of the week: close to what jobs run, and what users
// who ask for two to three times more give.
var (
	tight = limits{Lo: 1.1, Hi: 1.5}
	loose = limits{Lo: 1.2, Hi: 3}
)

// Result is everything measured.
type Result struct {
	Days     int         `json:"days"`
	Jobs     int         `json:"jobs"`
	HalfLife string      `json:"half_life"`
	Reserve  string      `json:"reserve_after"`
	Policies []simResult `json:"policies"`
	// Loose is the dspool policy on the same week with time limits that
	// overshoot more.
	Loose *simResult    `json:"loose_limits"`
	Pass  *passResult   `json:"pass_100k"`
	Load1 float64       `json:"load1_before"`
	Took  time.Duration `json:"took_ns"`
}

func main() {
	short := flag.Bool("short", false, "two days and a pass of 10,000 jobs: a quick check that everything works")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	days, queued, reps := 7, 100_000, 9
	if *short {
		days, queued, reps = 2, 10_000, 2
	}
	began := time.Now()
	r := &Result{Days: days, Load1: host.Load1()}
	cfg := fairshare.Config{}.WithDefaults()
	r.HalfLife, r.Reserve = cfg.HalfLife.String(), cfg.ReserveAfter.String()
	monday := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	trace := week(monday, days, 20, tight)
	r.Jobs = len(trace)
	for _, p := range policies {
		host.Logf("simulate %d days, %d jobs: %s", days, len(trace), p.Name)
		r.Policies = append(r.Policies, simulate(trace, monday.AddDate(0, 0, days), p, cfg))
	}
	own := policies[len(policies)-1]
	host.Logf("simulate %d days, time limits %.1f-%.0fx: %s", days, loose.Lo, loose.Hi, own.Name)
	l := simulate(week(monday, days, 20, loose), monday.AddDate(0, 0, days), own, cfg)
	r.Loose = &l
	host.Logf("one pass at %d queued jobs on 10,000 nodes, %d times", queued, reps)
	r.Pass = benchPass(queued, reps, cfg)
	r.Took = time.Since(began)
	report(os.Stdout, r)
	if err := host.WriteJSON(*jsonOut, r); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
