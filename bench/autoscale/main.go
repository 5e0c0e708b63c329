// Command autoscale measures the autoscaler: how long autoscale.Decide
// takes for 1,000 pools, and what the simulator (autoscale/sim) finds on
// the shipped week of a 20-person team, beside always-on and a
// CPU-threshold policy and the clairvoyant lower bound, with its own run
// time. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/dspool/dspool/autoscale/sim"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/poolfile"
)

// Sizes are how much each measurement does.
type Sizes struct {
	Pools       int `json:"pools"`
	DecideReps  int `json:"decide_reps"`
	SimulateRep int `json:"simulate_reps"`
	ColdStarts  int `json:"cold_starts"`
}

// Result is everything measured.
type Result struct {
	Sizes  Sizes        `json:"sizes"`
	Decide DecideResult `json:"decide"`
	// Week is the simulator's result on the shipped week, as
	// `dspool simulate -o json` prints it.
	Week *sim.Result `json:"week"`
	// Spread is the same week with sessions routed to the least-loaded
	// node (sim.RouteSpread) instead of packed, a what-if.
	Spread *sim.Result `json:"week_spread_routing"`
	// SimulateP50Ms is the simulator's run time on the week, all four
	// policies, median of SimulateRep runs.
	SimulateP50Ms float64 `json:"simulate_p50_ms"`
	SimulateMinMs float64 `json:"simulate_min_ms"`
	// ColdStart is a job submitted to a zero-node local pool -> running.
	ColdStart *ColdStart `json:"cold_start"`
	Load1     float64    `json:"load1_before"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	trace := flag.String("trace", "autoscale/sim/testdata/team-week.csv", "the week to simulate")
	pools := flag.String("pools", "autoscale/sim/testdata/team-pools.yaml", "its pools file")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	n := Sizes{Pools: 1000, DecideReps: 300, SimulateRep: 9, ColdStarts: 7}
	if *short {
		n = Sizes{Pools: 1000, DecideReps: 20, SimulateRep: 2, ColdStarts: 2}
	}
	if err := run(n, *trace, *pools, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n Sizes, tracePath, poolsPath, jsonOut string) error {
	r := &Result{Sizes: n, Load1: host.Load1()}
	host.Logf("decide: %d pools x %d repetitions", n.Pools, n.DecideReps)
	r.Decide = benchDecide(n.Pools, n.DecideReps)

	f, err := os.Open(tracePath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr, err := sim.ParseTrace(f)
	if err != nil {
		return fmt.Errorf("%s: %w", tracePath, err)
	}
	b, err := os.ReadFile(poolsPath)
	if err != nil {
		return err
	}
	ps, err := poolfile.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", poolsPath, err)
	}
	host.Logf("simulate: %s, %d runs", tracePath, n.SimulateRep)
	var times []time.Duration
	for range n.SimulateRep {
		start := time.Now()
		if r.Week, err = sim.Run(tr, ps, sim.Options{}); err != nil {
			return err
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	r.SimulateP50Ms = ms(times[(len(times)-1)/2])
	r.SimulateMinMs = ms(times[0])
	if r.Spread, err = sim.Run(tr, ps, sim.Options{Routing: sim.RouteSpread}); err != nil {
		return err
	}
	host.Logf("cold start: %d jobs, each on a local pool at zero nodes", n.ColdStarts)
	if r.ColdStart, err = coldStart(context.Background(), n.ColdStarts, false); err != nil {
		return fmt.Errorf("cold start: %w", err)
	}
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
