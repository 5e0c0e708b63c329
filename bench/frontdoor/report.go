package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

func report(w io.Writer, r *Result) {
	n := r.Sizes
	fmt.Fprintf(w, "\ndspool front doors, %d cpus, load1 %.2f before and %.2f after", r.CPUs, r.Load1Before, r.Load1After)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, "\n\nSSH login (connect + key exchange + authentication) from a fresh address, %d runs each;\n"+
		"attacked: %d addresses each keep %d connections unauthenticated (%d slots held)\n\n", n.Logins, n.Holders, n.PerHold, r.SSHHeld)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tIDLE\tATTACKED\tTARGET")
	sshTarget := "succeeds, p50 <= 2x idle: "
	switch {
	case r.SSHAttacked == nil || r.SSHFailed > 0:
		sshTarget += fmt.Sprintf("MISSED (%d of %d failed)", r.SSHFailed, n.Logins)
	case r.SSHAttacked.P50 <= 2*r.SSHIdle.P50:
		sshTarget += fmt.Sprintf("met (%.2fx)", r.SSHAttacked.P50/r.SSHIdle.P50)
	default:
		sshTarget += fmt.Sprintf("MISSED (%.2fx)", r.SSHAttacked.P50/r.SSHIdle.P50)
	}
	fmt.Fprintf(tw, "ssh login p50 / p99 ms\t%s\t%s\t%s\n", pair(r.SSHIdle), pair(r.SSHAttacked), sshTarget)
	httpTarget := "p99 <= 100 ms: "
	switch {
	case r.HTTPLoaded == nil || r.HTTPFailed > 0:
		httpTarget += fmt.Sprintf("MISSED (%d of %d failed)", r.HTTPFailed, n.Healthz)
	case r.HTTPLoaded.P99 <= 100:
		httpTarget += "met"
	default:
		httpTarget += "MISSED"
	}
	fmt.Fprintf(tw, "GET /healthz p50 / p99 ms\t%s\t%s\t%s\n", pair(r.HTTPIdle), pair(r.HTTPLoaded), httpTarget)
	tw.Flush()
	fmt.Fprintf(w, "\n/healthz: %d requests each, a new connection each; attacked: one address opens %d connections "+
		"(%d held; the rest refused and dialled again every second), and the same user sends %d requests to follow "+
		"a log that is a FIFO from another address, abandoning each\n", n.Healthz, n.Conns, r.HTTPHeld, r.LogsAbandoned)
	fmt.Fprintf(w, "warnings of refused connections in dspool's log: %d lines\n", r.Warnings)
}

func pair(d *Dist) string {
	if d == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f / %.2f", d.P50, d.P99)
}
