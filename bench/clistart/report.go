package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// The targets of issue 18: `dspool version` within 3 ms of CPU.
const versionTargetMs = 3.0

func report(r *Result) {
	fmt.Printf("\nCLI start (%d runs each; CPU = user + system from the kernel's accounting of the process; load %.2f before, %.2f after)\n\n",
		r.Runs, r.Load1, r.Load1After)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "command\tCPU p50 ms\tp10\tp90\tuser\tsys\tminor faults\tmax RSS KiB\twall p50 ms\t")
	row := func(name string, c Cost) {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t\n", name, c.CPUP50Ms, c.CPUP10Ms, c.CPUP90Ms,
			c.UserMs, c.SysMs, c.Faults, c.RSSKiB, c.WallMs)
	}
	row("Go hello world", r.Hello)
	row("dspool version", r.Version)
	row("dspool job submit --help", r.SubmitHelp)
	if r.Submit != nil {
		row("dspool job submit", *r.Submit)
	}
	if r.BaseVersion != nil {
		row("baseline: dspool version", *r.BaseVersion)
		row("baseline: dspool job submit --help", *r.BaseSubmitHelp)
	}
	if r.BaseSubmit != nil {
		row("baseline: dspool job submit", *r.BaseSubmit)
	}
	tw.Flush()
	status := "met"
	if r.Version.CPUP50Ms > versionTargetMs {
		status = "MISSED"
	}
	fmt.Printf("\ndspool version: %.2f ms of CPU, %.1fx a Go hello world (target <= %.0f ms: %s)\n",
		r.Version.CPUP50Ms, r.Version.CPUP50Ms/r.Hello.CPUP50Ms, versionTargetMs, status)
	if r.Submit != nil {
		fmt.Printf("dspool job submit: %.2f ms of CPU in the CLI, %.2f ms in the control plane per submission\n",
			r.Submit.CPUP50Ms, r.ServerMs)
	}
	if len(r.Parallel) > 0 {
		fmt.Printf("\nsubmissions/s, %d processes at a time (jobs that never run: a pool without machines, sbatch -H)\n", procs)
		for i, rd := range r.Parallel {
			fmt.Printf("  round %d: %s\n", i+1, rd)
		}
	}
}
