package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/dspool/dspool/bench/internal/host"
)

// Lat is the latency of one kind of request, in ms.
type Lat struct {
	Requests int     `json:"requests"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func dists(by map[string][]float64) map[string]Lat {
	out := map[string]Lat{}
	for op, ms := range by {
		s := slices.Sorted(slices.Values(ms))
		out[op] = Lat{Requests: len(s), P50Ms: host.Pct(s, 50), P99Ms: host.Pct(s, 99), MaxMs: s[len(s)-1]}
	}
	return out
}

func report(w io.Writer, r *Result) {
	s := r.Seeded
	fmt.Fprintf(w, "\nretention: a prune of %d rows (%d jobs, %d attempts, %d sessions, %d events, %d audit entries, %d of them exported)\n",
		s.total(), s.Jobs, s.Attempts, s.Sessions, s.Events, s.Audit, r.Exported)
	fmt.Fprintf(w, "took %.1f s (%.0f rows/s), its longest batch held the writer %.1f ms, on %d cpus, %s;\n%d clients each submit, cancel and list a job every %.0f ms\n\n",
		r.PruneS, r.RowsPerS, r.BatchMaxMs, r.CPUs, r.Version, r.Sizes.Clients, r.Sizes.IntervalMs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "request\twhen\trequests\tp50 ms\tp99 ms\tmax ms\t")
	for _, op := range []string{"submit", "cancel", "list"} {
		for _, x := range []struct {
			when string
			l    Lat
		}{{"before the prune", r.Before[op]}, {"during the prune", r.During[op]}} {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t\n", op, x.when, x.l.Requests, x.l.P50Ms, x.l.P99Ms, x.l.MaxMs)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfailed requests: %d %s\nload average (1 min): %.2f before, %.2f after\n", r.Errors, r.FirstError, r.Load1Before, r.Load1After)
}
