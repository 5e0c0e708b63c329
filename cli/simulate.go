package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale/sim"
	"github.com/dspool/dspool/poolfile"
	"github.com/spf13/cobra"
)

func (a *App) simulateCmd() *cobra.Command {
	var traceFile, poolsFile string
	var boot time.Duration
	c := &cobra.Command{
		Use:   "simulate --trace FILE --pools FILE",
		Short: "Replay a workload trace through the autoscaler and compare policies",
		Long: `Replay a week (or any span) of a team's work in virtual time through the same
autoscaler, scheduler and session routing the control plane runs, and compare
what each pool's policy costs and how long work waits with:

  always-on at max   every pool keeps its max nodes all the time
  cpu threshold      scale-set style: +1 node when cpu_percent > 70 over 5m,
                     -1 idle node when < 30 over 10m, min at least 1; it adds
                     no node for work that waits
  lower bound        clairvoyant: at every instant the fewest nodes that hold
                     the work running then, started on arrival and packed
                     perfectly, with no boot time and no max (so no wait)

It talks to no server. The pools file is the one ` + "`dspool pool apply`" + ` takes.
The trace is CSV, one line per arrival after the header line:

  # start: 2026-06-01T00:00:00+01:00      (optional: the trace's time zero)
  at,kind,pool,user,cpus,memory,gpus,duration
  2026-06-01T08:35:09+01:00,session,interactive,carla,,,,3h55m
  2026-06-01T20:14:02+01:00,job,batch,rita,4,16GiB,,45m
  2026-06-01T21:02:40+01:00,job,gpu,ivo,4,24GiB,1,1h30m

at is an RFC 3339 time or an offset from the start (8h35m); whole seconds, in
time order. A session reserves its pool's sessions.cpus and sessions.memory,
so it leaves cpus, memory and gpus empty; it gives up after the pool's
wait_timeout. duration is how long the work runs once started. A trace of
offsets without a start line starts on Monday 2026-01-05 00:00 UTC, which
matters to schedules.

Waits are from arrival to start; p95 is the 95th percentile, which can be
below the mean when a few waits are long. -o json adds each wait's maximum
and the sessions that gave up.`,
		Example: "  dspool simulate --trace week.csv --pools pools.yaml\n" +
			"  dspool simulate --trace week.csv --pools pools.yaml --boot-time 2m -o json",
		Args: args(0, 0, "no arguments", "dspool simulate --trace week.csv --pools pools.yaml"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if traceFile == "" {
				return dspool.Invalid("--trace", "give the workload trace with --trace FILE (- for stdin)")
			}
			if poolsFile == "" {
				return dspool.Invalid("--pools", "give the pools file with --pools FILE")
			}
			if _, err := a.json(); err != nil {
				return err
			}
			data, err := readLimited(poolsFile, poolfile.MaxSize+1)
			if err != nil {
				return err
			}
			pools, err := poolfile.Parse(data)
			if err != nil {
				return fmt.Errorf("%s: %w", poolsFile, err)
			}
			in := a.Stdin
			if traceFile != "-" {
				f, err := os.Open(traceFile)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			trace, err := sim.ParseTrace(in)
			if err != nil {
				return fmt.Errorf("%s: %w", traceFile, err)
			}
			res, err := sim.Run(trace, pools, sim.Options{BootTime: boot})
			if err != nil {
				return fmt.Errorf("%s: %w", traceFile, err)
			}
			return a.printSimulation(res)
		},
	}
	f := c.Flags()
	f.StringVar(&traceFile, "trace", "", "workload trace (CSV), - for stdin")
	f.StringVar(&poolsFile, "pools", "", "pools file (YAML), the one dspool pool apply takes")
	f.DurationVar(&boot, "boot-time", sim.DefaultBootTime, "how long a new node takes to be ready")
	return c
}

func (a *App) printSimulation(r *sim.Result) error {
	if asJSON, _ := a.json(); !asJSON {
		loc := r.Start.Location()
		fmt.Fprintf(a.Stdout, "%s and %s from %s to %s; nodes ready %s after they are asked for.\n\n",
			dspool.Plural(r.Jobs, "job"), dspool.Plural(r.Sessions, "session"), r.Start.In(loc).Format("2006-01-02 15:04 MST"), r.End.In(loc).Format("2006-01-02 15:04 MST"), time.Duration(r.BootTime))
	}
	err := a.print(r, []string{"POOL", "POLICY", "NODE-HOURS", "VS LOWER BOUND", "COST", "JOBS", "JOB WAIT MEAN/P95", "SESSIONS", "SESSION WAIT MEAN/P95"},
		func(add func(...any)) {
			row := func(pool string, p *sim.PolicyResult, f *sim.Figures) {
				vs := fmt.Sprintf("%.2fx", f.VsLowerBound)
				if f.VsLowerBound == 0 && p.Name != sim.PolicyLowerBound {
					vs = "-" // no work: the bound is 0 node-hours
				}
				add(pool, p.Name, fmt.Sprintf("%.1f", f.NodeHours), vs, fmt.Sprintf("%.2f", f.Cost),
					served(f.Jobs), waits(f.Jobs), served(f.Sessions), waits(f.Sessions))
			}
			if len(r.Policies) == 0 {
				return
			}
			for i := range r.Policies[0].Pools {
				for k := range r.Policies {
					p := &r.Policies[k]
					row(p.Pools[i].Pool, p, &p.Pools[i])
				}
			}
			if len(r.Policies[0].Pools) > 1 {
				for k := range r.Policies {
					row("total", &r.Policies[k], &r.Policies[k].Total)
				}
			}
		})
	if err != nil {
		return err
	}
	if asJSON, _ := a.json(); !asJSON {
		fmt.Fprintln(a.Stdout, "\nCost is node-hours x price_per_node_hour. Waits are from arrival to start; a session that gives up counts its wait_timeout.")
	}
	return nil
}

// served is "12" work served, with those that gave up.
func served(w sim.Waits) string {
	if w.Arrived == 0 {
		return "-"
	}
	if w.GaveUp > 0 {
		return fmt.Sprintf("%d (%d gave up)", w.Served, w.GaveUp)
	}
	return fmt.Sprint(w.Served)
}

// waits is "12s / 1m5s", or - when no such work arrived.
func waits(w sim.Waits) string {
	if w.Arrived == 0 {
		return "-"
	}
	return secs(w.MeanS) + " / " + secs(w.P95S)
}

func secs(s float64) string {
	return (time.Duration(s+0.5) * time.Second).String()
}
