package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
)

func (a *App) scheduleCmd() *cobra.Command {
	c := &cobra.Command{Use: "schedule", Short: "Run jobs on a schedule (cron)",
		Long: `A schedule submits a job at each slot of a cron expression, in a time zone:
each run is a job like any other (job list, job logs), named after its
schedule. A slot fires once, also when the control plane restarts at its
time; slots missed while the control plane was down run once, the latest
of them, when it is back.`,
		Example: "  dspool schedule create nightly --cron '0 2 * * *' --tz Europe/Lisbon -- sh -c 'date >> $HOME/nightly.log'\n  dspool schedule list\n  dspool schedule show nightly"}
	c.AddCommand(a.scheduleCreateCmd(), a.scheduleListCmd(), a.scheduleShowCmd(),
		a.scheduleEachCmd("pause", "Stop schedules firing until they are resumed", "slots while paused do not run, even once resumed; runs already submitted go on"),
		a.scheduleEachCmd("resume", "Let paused schedules fire again", "they fire from their next slot after now"),
		a.scheduleEachCmd("delete", "Delete schedules", "the jobs they submitted stay, queued and running ones included"))
	return c
}

const scheduleCreateUsage = "dspool schedule create NAME --cron EXPR [flags] -- COMMAND [ARGS...]"

func (a *App) scheduleCreateCmd() *cobra.Command {
	var o jobFlags
	var spec dspool.ScheduleSpec
	var overlap string
	c := &cobra.Command{
		Use:   "create NAME --cron EXPR [flags] -- COMMAND [ARGS...] | create NAME --cron EXPR [flags] SCRIPT [ARGS...]",
		Short: "Create a schedule: a job submitted at each slot of a cron expression",
		Long: `Create a schedule of yours: at each slot of --cron, read in --tz, it submits
a job of the command, with the job flags of job submit (pool, resources,
environment, secrets, a batch script and its #DSPOOL lines, ...). The job
is checked now as job submit checks one, and again at each slot, as you
then: a slot whose job is refused (you left the team that may use the
pool, a secret is gone) runs nothing, and schedule show says why.

--cron takes crontab's five fields (minute hour day-of-month month
day-of-week; a day matches by either of its two fields when both are
given), six with seconds first, or @hourly, @daily, @weekly, @monthly,
@yearly, @every DURATION. Slots are at least 2s apart.

--overlap says what a slot does while a run of an earlier one is still
queued or running: skip (no run for this slot, the default), queue (a run
beside it) or replace (cancel it, then run).

A slot fires once, also across a restart of the control plane at its
time. Slots missed while the control plane was down: the latest of them
runs once when it is back, however late, unless --starting-deadline says
how late is too late.`,
		Example: `  dspool schedule create nightly --cron '0 2 * * *' --tz Europe/Lisbon -- sh -c 'date >> $HOME/nightly.log'
  dspool schedule create poll --cron '@every 10m' --cpus 0.5 --memory 256MiB -- python3 -c 'print(6*7)'
  dspool schedule create refresh --cron '*/30 * * * * *' --overlap replace --time 1m -- sh -c 'date > latest.txt'`,
		Args: args(2, -1, "a name and, after --, the command to run", scheduleCreateUsage),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash == 0 {
				return dspool.Invalid("NAME", "give the schedule's name before --: %s", scheduleCreateUsage)
			}
			spec.Name, spec.Overlap = args[0], dspool.Overlap(overlap)
			if !cmd.Flags().Changed("name") {
				o.spec.Name = spec.Name // its runs are listed by the schedule's name
			}
			job, err := o.build(a, cmd, args[1:], dash > 0)
			if err != nil {
				return err
			}
			spec.Job = *job
			if err := spec.Normalize(); err != nil {
				return scheduleFlags(err, &o)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			sc, err := cl.CreateSchedule(cmd.Context(), &spec)
			if err != nil {
				return scheduleFlags(err, &o)
			}
			return a.printSchedules(sc, []*dspool.Schedule{sc})
		},
	}
	o.add(c, scheduleCreateUsage)
	f := c.Flags()
	f.Lookup("name").Usage = "the name of each run (default: the schedule's)"
	f.StringVar(&spec.Cron, "cron", "", "when: a cron expression, e.g. '0 2 * * *' (02:00 each day), '*/15 * * * *', @daily, '@every 6h' (required)")
	f.StringVar(&spec.Timezone, "tz", "", "the time zone --cron is read in, e.g. Europe/Lisbon (default UTC)")
	f.StringVar(&overlap, "overlap", "skip", "at a slot while an earlier run is queued or running: skip, queue or replace")
	f.Var((*durationFlag)(&spec.StartingDeadline), "starting-deadline", "a slot the control plane missed by more than this is not run late (default: the latest missed slot runs once, however late)")
	_ = c.MarkFlagRequired("cron")
	return c
}

// scheduleFlags names the flag an error of a schedule's creation is about:
// the fields of the schedule and, within job, those of its job.
func scheduleFlags(err error, o *jobFlags) error {
	var e *dspool.Error
	if errors.As(err, &e) {
		if rest, ok := strings.CutPrefix(e.Field, "job."); ok {
			c := *e
			c.Field = rest
			return o.flagsOf(&c)
		}
	}
	return withFlags(err, map[string]string{"name": "NAME", "cron": "--cron", "timezone": "--tz", "overlap": "--overlap",
		"starting_deadline": "--starting-deadline"})
}

func (a *App) scheduleListCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use: "list", Short: "List your schedules", Args: args(0, 0, "", "dspool schedule list"),
		Example: "  dspool schedule list\n  dspool schedule list --all-users -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.Schedules(cmd.Context(), all)
			if err != nil {
				return err
			}
			return a.printSchedules(l, l)
		},
	}
	c.Flags().BoolVar(&all, "all-users", false, "every user's schedules (admin)")
	return c
}

// printSchedules prints schedules as a table, or v as JSON.
func (a *App) printSchedules(v any, l []*dspool.Schedule) error {
	return a.print(v, []string{"ID", "NAME", "USER", "CRON", "TIMEZONE", "OVERLAP", "STATE", "NEXT SLOT", "LAST SLOT", "LAST JOB"}, func(add func(...any)) {
		for _, s := range l {
			last := "-"
			if s.LastJob != 0 {
				last = fmt.Sprint(s.LastJob)
			}
			add(s.ID, s.Name, s.User, s.Cron, s.Timezone, s.Overlap, scheduleState(s), slotTime(s.NextSlot, s), slotTime(s.LastSlot, s), last)
		}
	})
}

func scheduleState(s *dspool.Schedule) string {
	switch {
	case s.Paused:
		return "paused"
	case s.NextSlot == nil:
		return "stopped"
	}
	return "active"
}

// slotTime is a slot in the schedule's time zone, as its cron expression
// reads it.
func slotTime(t *time.Time, s *dspool.Schedule) string {
	if t == nil {
		return "-"
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		loc = time.UTC
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST")
}

func (a *App) scheduleShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME|ID", Short: "Show a schedule, where its slots stand and its latest runs",
		Args:    args(1, 1, "one schedule's name or id", "dspool schedule show nightly"),
		Example: "  dspool schedule show nightly\n  dspool schedule show nightly -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			d, err := cl.Schedule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if ok, _ := a.json(); ok {
				return a.print(d, nil, nil)
			}
			return a.showSchedule(d)
		},
	}
}

func (a *App) showSchedule(d *api.ScheduleDetail) error {
	s, w := d.Schedule, a.Stdout
	fmt.Fprintf(w, "Schedule %d: %s\n", s.ID, s.Name)
	fmt.Fprintf(w, "  user:       %s\n", s.User)
	fmt.Fprintf(w, "  cron:       %s (%s)\n", sanitize(s.Cron), s.Timezone)
	fmt.Fprintf(w, "  overlap:    %s\n", s.Overlap)
	if s.StartingDeadline > 0 {
		fmt.Fprintf(w, "  starting deadline: %s\n", time.Duration(s.StartingDeadline))
	}
	fmt.Fprintf(w, "  state:      %s\n", scheduleState(s))
	fmt.Fprintf(w, "  next slot:  %s\n", slotTime(s.NextSlot, s))
	if s.LastSlot != nil {
		ran := "no job"
		if s.LastJob != 0 {
			ran = fmt.Sprintf("job %d", s.LastJob)
		}
		fmt.Fprintf(w, "  last slot:  %s (%s)\n", slotTime(s.LastSlot, s), ran)
	}
	if s.Message != "" {
		fmt.Fprintf(w, "  message:    %s\n", sanitize(s.Message))
	}
	j := s.Job
	fmt.Fprintf(w, "  command:    %s\n", sanitize(strings.Join(quoteArgs(j.Command), " ")))
	fmt.Fprintf(w, "  job:        pool %s, %s, %s memory, %s", j.Pool, dspool.Plural(j.CPUs, "cpu"), j.Memory, dspool.Plural(j.GPUs, "gpu"))
	if j.Team != "" {
		fmt.Fprintf(w, ", team %s", j.Team)
	}
	if j.TimeLimit > 0 {
		fmt.Fprintf(w, ", time limit %s", time.Duration(j.TimeLimit))
	}
	fmt.Fprintln(w)
	if len(j.Secrets) > 0 {
		fmt.Fprintf(w, "  secrets:    %s\n", sanitize(secretUses(j.Secrets)))
	}
	fmt.Fprintf(w, "  created:    %s\n", s.CreatedAt.Local().Format(time.DateTime))
	if len(d.Runs) == 0 {
		fmt.Fprintln(w, "\nNo runs yet.")
		return nil
	}
	fmt.Fprintf(w, "\nLatest runs (all of them: dspool job list --schedule %s):\n", s.Name)
	return a.printJobs(d.Runs)
}

// scheduleEachCmd is pause, resume or delete: one request per schedule
// named, in order, stopping at the first that fails.
func (a *App) scheduleEachCmd(verb, short, long string) *cobra.Command {
	return &cobra.Command{
		Use: verb + " NAME|ID...", Short: short, Long: short + ": " + long + ".",
		Args:    args(1, -1, "the names or ids of the schedules", "dspool schedule "+verb+" nightly"),
		Example: fmt.Sprintf("  dspool schedule %s nightly\n  dspool schedule %s poll refresh", verb, verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			do := map[string]func(string) (*dspool.Schedule, error){
				"pause":  func(ref string) (*dspool.Schedule, error) { return cl.PauseSchedule(cmd.Context(), ref) },
				"resume": func(ref string) (*dspool.Schedule, error) { return cl.ResumeSchedule(cmd.Context(), ref) },
				"delete": func(ref string) (*dspool.Schedule, error) { return cl.DeleteSchedule(cmd.Context(), ref) },
			}[verb]
			var out []*dspool.Schedule
			for _, ref := range args {
				s, err := do(ref)
				if err != nil {
					return err
				}
				out = append(out, s)
			}
			if verb == "delete" && a.output != "json" {
				// The schedules as they were: say that they are gone.
				for _, s := range out {
					fmt.Fprintf(a.Stderr, "deleted schedule %s; the jobs it submitted stay (dspool job list --schedule %s)\n", s.Name, s.Name)
				}
			}
			return a.printSchedules(out, out)
		},
	}
}
