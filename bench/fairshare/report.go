package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

const (
	deviationTarget = 0.10
	waitRatioTarget = 2.0
	passTargetMs    = 100
)

func report(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\nA simulated team: %d days, %d jobs, 4 users flooding %d nodes of %d cpus (ana with 2 shares, cho whole-node jobs only), 4 submitting now and then; time limits %.1f-%.1fx what jobs run; half-life %s, reserve after %s; load1 %.2f before\n\n",
		r.Days, r.Jobs, nodeCount, nodeCPUs, tight.Lo, tight.Hi, r.HalfLife, r.Reserve, r.Load1)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tSHARES GOT (TARGET)\tMAX DEVIATION\tP95 WAIT LARGE/SMALL (LIGHT USERS)\tRATIO\tP95 WAIT LARGE/SMALL (ALL)\tCPU USE\tPASS P50/MAX\tRUN")
	rows := r.Policies
	if r.Loose != nil {
		l := *r.Loose
		l.Policy.Name += fmt.Sprintf(", time limits %.1f-%.0fx", loose.Lo, loose.Hi)
		rows = append(rows, l)
	}
	for _, p := range rows {
		var sh []string
		for _, u := range p.Shares {
			sh = append(sh, fmt.Sprintf("%s %.0f%% (%.0f%%)", u.User, 100*u.Got, 100*u.Target))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%s / %s\t%.2fx\t%s / %s\t%.0f%%\t%.0f / %.0f us\t%.1f s\n", p.Policy.Name, strings.Join(sh, ", "), 100*p.MaxDeviation,
			dur(p.LightLargeP95), dur(p.LightSmallP95), ratio(p.LightLargeP95, p.LightSmallP95), dur(p.AllLargeP95), dur(p.AllSmallP95),
			100*p.Utilization, p.PassP50Us, p.PassMaxUs, p.RunMs/1000)
	}
	tw.Flush()
	own := r.Policies[len(r.Policies)-1]
	fmt.Fprintf(w, "\nTargets, %s: fair-share deviation <= %.0f%%: %.1f%%, %s; p95 wait of large jobs <= %.0fx small jobs' (light users): %.2fx, %s\n",
		own.Policy.Name, 100*deviationTarget, 100*own.MaxDeviation, metOr(own.MaxDeviation <= deviationTarget),
		waitRatioTarget, ratio(own.LightLargeP95, own.LightSmallP95), metOr(ratio(own.LightLargeP95, own.LightSmallP95) <= waitRatioTarget))
	if p := r.Pass; p != nil {
		fmt.Fprintf(w, "One pass at %d queued jobs (%d reserving, %d users) on %d nodes: factors %.1f ms + scores %.1f ms + plan %.1f ms = %.1f ms p50 (max %.1f ms), %d placed, %d reservations; target <= %d ms: %s\n",
			p.Queued, p.Reserving, p.Users, p.Nodes, p.FactorsP50Ms, p.ScoreP50Ms, p.PlanP50Ms, p.TotalP50Ms, p.TotalMaxMs, p.Placed, p.Reservations,
			passTargetMs, metOr(p.TotalP50Ms <= passTargetMs))
	}
	fmt.Fprintf(w, "(took %s)\n", r.Took.Round(time.Millisecond))
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Minute).String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func metOr(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
