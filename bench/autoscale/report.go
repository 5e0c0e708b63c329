package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dspool/dspool/autoscale/sim"
)

const decideTargetMs = 10

func report(w io.Writer, r *Result) {
	d := r.Decide
	fmt.Fprintf(w, "\nautoscale.Decide for %d pools (%d nodes, %d waiting, %d rules, %d schedules in all), %d repetitions; load1 %.2f before\n\n",
		d.Pools, d.Nodes, d.Waiting, d.Rules, d.Schedules, r.Sizes.DecideReps, r.Load1)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tP50\tP99\tTARGET")
	fmt.Fprintf(tw, "all %d pools\t%.2f ms\t%.2f ms\tp50 <= %d ms: %s\n", d.Pools, d.P50Ms, d.P99Ms, decideTargetMs, metOr(d.P50Ms <= decideTargetMs))
	fmt.Fprintf(tw, "the same, schedules removed\t%.2f ms\t%.2f ms\t-\n", d.NoSchedulesP50Ms, d.NoSchedulesP99Ms)
	tw.Flush()

	wk := r.Week
	fmt.Fprintf(w, "\nThe shipped week (%d jobs, %d sessions, %s to %s), boot time %s; simulator run time p50 %.0f ms (min %.0f ms) for all four policies\n\n",
		wk.Jobs, wk.Sessions, wk.Start.Format("2006-01-02 15:04"), wk.End.Format("2006-01-02 15:04"), time.Duration(wk.BootTime), r.SimulateP50Ms, r.SimulateMinMs)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tPOLICY\tNODE-HOURS\tVS LOWER BOUND\tCOST\tJOB WAIT MEAN/P95\tSESSION WAIT MEAN/P95\tSESSIONS GAVE UP")
	rows := func(res *sim.Result, suffix string) {
		for i := range res.Policies[0].Pools {
			for k := range res.Policies {
				p := &res.Policies[k]
				if suffix != "" && p.Name != sim.PolicyOwn {
					continue
				}
				row(tw, p.Pools[i].Pool, p.Name+suffix, &p.Pools[i])
			}
		}
		for k := range res.Policies {
			p := &res.Policies[k]
			if suffix != "" && p.Name != sim.PolicyOwn {
				continue
			}
			row(tw, "total", p.Name+suffix, &p.Total)
		}
	}
	rows(wk, "")
	rows(r.Spread, " (sessions spread)")
	tw.Flush()

	own := wk.Policy(sim.PolicyOwn).Total
	bootPlus := time.Duration(wk.BootTime).Seconds() + 5
	fmt.Fprintf(w, "\nTargets on the week, the pools file's policy: node-hours <= 1.15x the lower bound: %.3fx, %s; "+
		"p95 session wait <= boot time + 5 s (%.0f s): %.0f s, %s\n", own.VsLowerBound, metOr(own.VsLowerBound <= 1.15),
		bootPlus, own.Sessions.P95S, metOr(own.Sessions.P95S <= bootPlus))
	if c := r.ColdStart; c != nil {
		fmt.Fprintf(w, "Job submitted to a zero-node local pool -> running (dspool up, real agents, %d runs): p50 %.2f s, max %.2f s; target <= 3 s: %s\n",
			c.Runs, c.P50S, c.MaxS, metOr(c.MaxS <= 3))
	}
}

func row(w io.Writer, pool, policy string, f *sim.Figures) {
	wait := func(x sim.Waits) string {
		if x.Arrived == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f s / %.0f s", x.MeanS, x.P95S)
	}
	gave := "-"
	if f.Sessions.Arrived > 0 {
		gave = fmt.Sprint(f.Sessions.GaveUp)
	}
	fmt.Fprintf(w, "%s\t%s\t%.1f\t%.3fx\t%.2f\t%s\t%s\t%s\n", pool, policy, f.NodeHours, f.VsLowerBound, f.Cost, wait(f.Jobs), wait(f.Sessions), gave)
}

func metOr(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
