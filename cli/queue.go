package cli

import (
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) queueCmd() *cobra.Command {
	var pool string
	c := &cobra.Command{
		Use:   "queue [--pool P]",
		Short: "Show every user's waiting work in the order it will run, and why it waits",
		Long: `Show the queued jobs of every user, of one pool with --pool, in the order the
scheduler takes them. POS is the place in its pool's queue (1 goes first).

A job's score is its priority plus two factors, in points: fair share (up to
1000: its user's and team's recent use against their share, see dspool share)
and age (up to 100 after a week's wait). A job that has waited long enough
(the control plane's --reserve-after, 10m by default) goes first and, when no
node has room for it, reserves the node where it can start soonest
(marked * in the table); smaller jobs then use that node only if their --time
ends before the reservation starts.

REASON is why it waits: starting (it starts at the next pass), resources (no
node has room), priority (jobs ahead took the room), reservation (it reserved
a node), reserved (the node with room is reserved for an older job), limit (a
team or user limit), no_node (the pool has no ready node yet), held (held,
waiting for other jobs, or parked by its array's cap), preempting (preemptible
work is being evicted for it) or preempted (it was evicted for a job of a
higher score and waits for room again, in its place by age). START is when it is
expected to start: each job in order takes the first room that lasts its
--time, after the jobs ahead, by the time limits of running work ("-":
unknown, as when the room is held by work without a time limit; only the
first 200 of each pool are planned). -o json adds the full reason of each.

A pool may hide other users' names (queue_names: hidden); admins see them.`,
		Args: args(0, 0, "", "dspool queue --pool gpu"),
		Example: `  dspool queue
  dspool queue --pool default
  dspool queue -o json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			q, err := cl.Queue(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if ok, _ := a.json(); len(q.Jobs) == 0 && !ok {
				where := "any pool"
				if pool != "" {
					where = "pool " + pool
				}
				fmt.Fprintf(a.Stderr, "(nothing waits in %s: a job submitted now is placed at once where a node has room)\n", where)
			}
			return a.print(q, []string{"POS", "JOB", "USER", "POOL", "CPUS", "MEMORY", "GPUS", "TIME", "PRIORITY", "FAIRSHARE", "AGE", "SCORE", "REASON", "START"}, func(add func(...any)) {
				for _, e := range q.Jobs {
					pos, user, limit := "-", e.User, "-"
					if e.Position > 0 {
						pos = fmt.Sprint(e.Position)
					}
					if e.Reserving {
						pos += "*"
					}
					if user == "" {
						user = "(hidden)"
					}
					if e.TimeLimit > 0 {
						limit = time.Duration(e.TimeLimit).String()
					}
					add(pos, e.Job, user, e.Pool, e.CPUs, e.Memory, e.GPUs, limit, e.Priority, fmt.Sprintf("%.0f", e.FairShare), fmt.Sprintf("%.0f", e.Age),
						fmt.Sprintf("%.0f", e.Score), e.Reason, startsIn(e.EstimatedStart, q.At))
				}
			})
		},
	}
	c.Flags().StringVar(&pool, "pool", "", "only this pool's queue")
	return c
}

// startsIn says when a job is expected to start, from at: "now", "in 5m",
// or "-" when unknown.
func startsIn(t *time.Time, at time.Time) string {
	switch {
	case t == nil:
		return "-"
	case !t.After(at):
		return "now"
	}
	return "in " + t.Sub(at).Round(time.Second).String()
}

func (a *App) shareCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "share",
		Short: "Show each team's and user's fair share and recent usage",
		Long: `Show how the pools are shared: each team, and each user (with the team they
work for), with their raw SHARES (set with dspool team limits --shares and
dspool user limits --shares; 1 by default), their TARGET part of the pools
among those with work, their USAGE (their part of all recent use), and the
FAIRSHARE factor it gives their jobs, from 1 (used nothing) through 0.5 (used
exactly their target) towards 0; TARGET and FAIRSHARE are "-" for an account
with no queued or running work, which takes no part of the pools.

Use is cpu-seconds, GPU-seconds and GiB-seconds of memory held by jobs, each
second counting half after every half-life (the control plane's
--fair-share-half-life, 7 days by default); a GPU counts as 8 cpus and 4GiB
of memory as one cpu. The table shows hours; -o json gives seconds.`,
		Args: args(0, 0, "", "dspool share"),
		Example: `  dspool share
  dspool share -o json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			rep, err := cl.Share(cmd.Context())
			if err != nil {
				return err
			}
			pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
			return a.print(rep, []string{"ACCOUNT", "TEAM", "SHARES", "TARGET", "USAGE", "EFFECTIVE", "FAIRSHARE", "CPU HOURS", "GPU HOURS", "GIB HOURS"}, func(add func(...any)) {
				row := func(kind string, s dspool.ShareAccount, team string) {
					name := s.Name
					if name == "" {
						name = "(hidden)"
					}
					if team == "" {
						team = "-"
					}
					// Target and factor count among those with work:
					// an account without any has neither.
					target, factor := "-", "-"
					if s.Active {
						target, factor = pct(s.Target), fmt.Sprintf("%.3f", s.Factor)
					}
					add(kind+" "+name, team, s.Shares, target, pct(s.Usage), pct(s.EffectiveUsage), factor,
						hours(s.CPUSeconds), hours(s.GPUSeconds), hours(s.GiBSeconds))
				}
				for _, t := range rep.Teams {
					row("team", t, "")
				}
				for _, u := range rep.Users {
					row("user", u, u.Team)
				}
			})
		},
	}
	return c
}
