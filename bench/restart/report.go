package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dspool/dspool/bench/internal/host"
)

// target is the most seconds a restart may take to serve again, and the
// most a fleet may take to be back.
const (
	target      = 1.0
	fleetTarget = 10.0
)

func report(w io.Writer, r *Result) {
	n := r.Sizes
	fmt.Fprintf(w, "\ndspool control plane restarts, %d cpus, load1 %s (before, between the parts, after)", r.CPUs, loads(r.Load1))
	if r.Version != "" {
		fmt.Fprintf(w, ", %s", r.Version)
	}
	fmt.Fprintln(w)
	if len(r.Restarts) > 0 {
		reportRestarts(w, r)
	}
	if len(r.Reconnects) > 0 {
		reportReconnects(w, r.Reconnects, n)
	}
}

func reportRestarts(w io.Writer, r *Result) {
	n := r.Sizes
	fmt.Fprintf(w, "\n`dspool server` with 2 agents, a store of %d queued jobs, %d finished, %d running and %d users' sessions (%.1f MB), "+
		"restarted %d times each way; seconds from the exec of the new process, p50 / max:\n\n",
		n.Queued, n.Done, n.Running, n.Sessions, r.StoreMB, n.Restarts)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "FIGURE\t%s\t%s\tTARGET\n", strings.ToUpper(kill9), sigterm)
	row := func(name string, judged bool, f func(Restart) float64) {
		k, t := pick(r.Restarts, kill9, f), pick(r.Restarts, sigterm, f)
		verdict := "reported"
		if judged {
			verdict = fmt.Sprintf("<= %.0f s: %s", target, met(max(worst(k), worst(t)) <= target))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, pair(k), pair(t), verdict)
	}
	row("GET /readyz answers 200", true, func(x Restart) float64 { return x.ReadyzS })
	row("a queued job's detail, right", true, func(x Restart) float64 { return x.JobShowS })
	row("the first 100 of every user's jobs, right", true, func(x Restart) float64 { return x.JobListS })
	if n.Sessions > 0 {
		row("the store's sessions taken up, pending", false, func(x Restart) float64 { return x.RecoveredS })
		row("every session confirmed by its node", true, func(x Restart) float64 { return x.SessionsS })
	}
	row("both agents connected", false, func(x Restart) float64 { return x.NodesS })
	row("a new job accepted", false, func(x Restart) float64 { return x.SubmitS })
	row("the new job running (its started_at)", true, func(x Restart) float64 { return x.JobStartS })
	tw.Flush()
	var stops []float64
	ended := 0
	for _, x := range r.Restarts {
		if x.Kind == sigterm {
			stops = append(stops, x.StopS)
		}
		ended += x.SessionsEnded
	}
	slices.Sort(stops)
	if len(stops) > 0 {
		fmt.Fprintf(w, "\nSIGTERM -> the old process's exit: %s s (p50 / max)\n", pair(stops))
	}
	fmt.Fprintf(w, "sessions ended by the restarts: %d (want 0)\n", ended)
}

func reportReconnects(w io.Writer, rs []Reconnect, n Sizes) {
	fmt.Fprintf(w, "\n%d simulated agents (real agents in one process, all from 127.0.0.1), `dspool server` killed (kill -9) and started again; "+
		"seconds from the exec of the new process:\n\n", n.Agents)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "FIGURE"
	for i := range rs {
		head += fmt.Sprintf("\tRUN %d", i+1)
	}
	fmt.Fprintln(tw, head+"\tTARGET")
	row := func(name, verdict string, f func(Reconnect) string) {
		line := name
		for _, x := range rs {
			line += "\t" + f(x)
		}
		fmt.Fprintln(tw, line+"\t"+verdict)
	}
	worstAll := 0.0
	for _, x := range rs {
		worstAll = max(worstAll, x.AllS)
	}
	row("the agents noticed, from the kill: p50 / last", "", func(x Reconnect) string {
		return fmt.Sprintf("%.3f / %.3f", x.LostP50S, x.LostLastS)
	})
	row("GET /readyz answers 200", "", func(x Reconnect) string { return fmt.Sprintf("%.3f", x.ReadyzS) })
	row("all connected, as the server counts them", fmt.Sprintf("<= %.0f s: %s", fleetTarget, met(worstAll <= fleetTarget)),
		func(x Reconnect) string { return fmt.Sprintf("%.2f", x.AllS) })
	row("each agent's connect: p50 / p90 / last", "", func(x Reconnect) string {
		return fmt.Sprintf("%.2f / %.2f / %.2f", x.P50S, x.P90S, x.LastS)
	})
	row("attempts to connect, from the kill", "", func(x Reconnect) string { return fmt.Sprint(x.Attempts) })
	row("  connected", "", func(x Reconnect) string { return fmt.Sprint(x.Connected) })
	row("  told to come back later (503 Retry-After)", "not errors", func(x Reconnect) string {
		return fmt.Sprintf("%d (%d agents)", x.Busy, x.BusyNodes)
	})
	row("  refused (nothing listening yet)", "", func(x Reconnect) string { return fmt.Sprint(x.Refused) })
	row("  closed without an answer", "", func(x Reconnect) string { return fmt.Sprint(x.Dropped) })
	row("  failed otherwise", "0", func(x Reconnect) string { return fmt.Sprint(x.Errors) })
	row("peak attempts per second (at s)", "", func(x Reconnect) string { return fmt.Sprintf("%.0f (%.1f)", x.PeakPerS, x.PeakAtS) })
	row("most attempts by one agent", "", func(x Reconnect) string { return fmt.Sprint(x.MaxTries) })
	row("backoff the agents chose: p50 / max", "", func(x Reconnect) string { return fmt.Sprintf("%.2f / %.2f", x.WaitP50S, x.WaitMaxS) })
	row("agents that gave up", "0", func(x Reconnect) string { return fmt.Sprint(x.Stopped) })
	row("cpu-s until all connected: server / agents", "", func(x Reconnect) string {
		return fmt.Sprintf("%.2f / %.2f", x.ServerCPUS, x.FleetCPUS)
	})
	row("cpus busy at rest before: server / agents", "", func(x Reconnect) string {
		return fmt.Sprintf("%.2f / %.2f", x.RestServerCPU, x.RestFleetCPU)
	})
	tw.Flush()
	for i, x := range rs {
		for _, k := range slices.Sorted(maps.Keys(x.ErrorKinds)) {
			fmt.Fprintf(w, "run %d: %d attempts failed with: %s\n", i+1, x.ErrorKinds[k], k)
		}
	}
	last := rs[len(rs)-1]
	fmt.Fprintf(w, "\nThe last run's attempts over time (from the exec; before it: the kill, %.3f s earlier):\n\n", last.KillExecS)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FROM S\tATTEMPTS\tCONNECTED\t503\tREFUSED\tCLOSED\tOTHER\t")
	for _, b := range coarse(last.Timeline, 20) {
		fmt.Fprintf(tw, "%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t\n", b.AtS, b.attempts(), b.Connected, b.Busy, b.Refused, b.Dropped, b.Errors)
	}
	tw.Flush()
}

// coarse merges a timeline's steps so that it has at most rows.
func coarse(bins []Bin, rows int) []Bin {
	k := int(math.Ceil(float64(len(bins)) / float64(rows)))
	if k <= 1 {
		return bins
	}
	var out []Bin
	for i := 0; i < len(bins); i += k {
		b := Bin{AtS: bins[i].AtS}
		for _, x := range bins[i:min(i+k, len(bins))] {
			b.Connected += x.Connected
			b.Busy += x.Busy
			b.Refused += x.Refused
			b.Dropped += x.Dropped
			b.Errors += x.Errors
		}
		out = append(out, b)
	}
	return out
}

func pick(rs []Restart, kind string, f func(Restart) float64) []float64 {
	var out []float64
	for _, x := range rs {
		if x.Kind == kind {
			out = append(out, f(x))
		}
	}
	slices.Sort(out)
	return out
}

func worst(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func pair(s []float64) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f / %.3f", host.Pct(s, 50), s[len(s)-1])
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func loads(l []float64) string {
	s := make([]string, len(l))
	for i, x := range l {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " / ")
}
