package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

func report(w io.Writer, r *Result) {
	n := r.Sizes
	fmt.Fprintf(w, "\ndspool access control, %d cpus, load1 %.2f before and %.2f after", r.CPUs, r.Load1Before, r.Load1After)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, "\n\nAuthorizing a request: GET %s, keep-alive clients, %.1f s per cell\n\n", listPath, n.DurationS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tCLIENTS\tANSWER\tREQ/S\tP50 MS\tP99 MS\tERRORS")
	for _, c := range r.Cells {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%d\n", c.Token, c.Conc, c.Want, c.ReqPerS, c.P50Ms, c.P99Ms, c.Errors)
	}
	tw.Flush()

	if v := r.Revocation; v != nil {
		var lags, cmds []string
		for _, run := range v.Runs {
			lags = append(lags, fmt.Sprintf("%+.2f", math.Round(run.FirstRefusalMs*100)/100+0)) // +0: no "-0.00"
			cmds = append(cmds, fmt.Sprintf("%.1f", run.CommandMs))
		}
		fmt.Fprintf(w, "\nRevocation, %d tokens in use (a request every 5 ms): `dspool token revoke` returned -> first 401: max %.2f ms "+
			"(each, from the return: %s ms); requests let in after it returned: %d; the command took %s ms\n",
			len(v.Runs), v.MaxLagMs, strings.Join(lags, ", "), v.LetIn, strings.Join(cmds, ", "))
	}

	fmt.Fprintf(w, "\nJob start: submitted_at -> started_at of `true` on the idle node, %d runs of each, alternately\n\n", n.StartRuns)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tP50 MS\tP90 MS\tMIN MS\tMAX MS")
	for _, s := range r.Starts {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\n", s.Kind, s.P50, s.P90, s.Min, s.Max)
	}
	tw.Flush()
	if len(r.Starts) == 2 {
		fmt.Fprintf(w, "secrets add %+.1f ms at p50, %+.1f ms at p90\n", r.Starts[1].P50-r.Starts[0].P50, r.Starts[1].P90-r.Starts[0].P90)
	}
}
