package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *App) jobCmd() *cobra.Command {
	c := &cobra.Command{Use: "job", Short: "Submit and follow batch jobs",
		Example: "  dspool job submit --wait --cpus 1 --memory 1GiB -- python3 -c 'print(6*7)'\n  dspool job list\n  dspool job logs -f 3"}
	c.AddCommand(a.jobSubmitCmd(), a.jobListCmd(), a.jobShowCmd(), a.jobLogsCmd(), a.jobCancelCmd(), a.jobWaitCmd(), a.jobRerunCmd(),
		a.jobHoldCmd(true), a.jobHoldCmd(false), a.jobPriorityCmd())
	return c
}

func (a *App) jobSubmitCmd() *cobra.Command {
	var o jobFlags
	var wait bool
	var waitTimeout dspool.Duration
	c := &cobra.Command{
		Use:   "submit [flags] -- COMMAND [ARGS...] | submit [flags] SCRIPT [ARGS...]",
		Short: "Submit a batch job",
		Long: `Submit a batch job. The command runs as you, on a node of the pool, in
jobs/ID on the share (or --workdir, relative to your home on the share). Its
arguments are passed as they are: no shell is involved unless you run one.

A batch script (a file here whose first line is #!, given without --) is
read and sent with the job, as sbatch does: it need not be on the share.
Lines at its top that begin with #DSPOOL hold flags of this command
(#DSPOOL --cpus 4 --gpus 1 --time 2h); flags on the command line win.

The job's environment is the node's, not yours: --export, --export-all and
--env-file bring variables along (their values are stored with the job and
shown by job show: use secrets for credentials), and --login runs the
command in your login shell, so that your profile (conda init, module
loads) applies.`,
		Example: `  dspool job submit --wait -- python3 -c 'import platform; print(platform.node())'
  dspool job submit --wait -- sh -c 'echo hello > out.txt'
  dspool job submit --cpus 1 --memory 2GiB --time 2h --workdir project -- python3 train.py --epochs 10
  dspool job submit --after ok:3 --workdir project -- python3 evaluate.py
  dspool job submit --array 0-3%2 --cpus 0.5 --workdir project -- sh -c 'python3 train.py --lr 1e-$DSPOOL_ARRAY_INDEX'`,
		Args:        args(1, -1, "the command to run after --", "dspool job submit -- python3 train.py"),
		Annotations: map[string]string{noSignals: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.spec.IdempotencyKey == "" {
				b := make([]byte, 16)
				_, _ = rand.Read(b)
				o.spec.IdempotencyKey = hex.EncodeToString(b)
			}
			spec, err := o.build(a, cmd, args, cmd.ArgsLenAtDash() >= 0)
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if spec.Workdir == "" && !cmd.Flags().Changed("workdir") {
				spec.Workdir = a.submitDir(cmd.Context(), cl)
			}
			// Retrying with the same key is safe: the server stores the job
			// once whatever happens to the connection.
			cl.Retrying = func(err error) {
				fmt.Fprintf(a.Stderr, "dspool: %v; retrying for up to 30 s (the same submission is never stored twice)\n", err)
			}
			j, err := cl.SubmitJob(cmd.Context(), spec, 30*time.Second)
			if err != nil {
				return o.flagsOf(err)
			}
			if !wait {
				return a.printJob(j)
			}
			if j.Array != nil {
				fmt.Fprintf(a.Stderr, "submitted array %d: %s\n", j.ID, dspool.Plural(j.Array.Tasks, "task"))
			} else {
				fmt.Fprintf(a.Stderr, "submitted job %d\n", j.ID)
			}
			ctx, stop := a.withSignals(cmd.Context())
			defer stop()
			return a.waitSubmitted(ctx, cl, j, time.Duration(waitTimeout))
		},
	}
	o.add(c, "dspool job submit [flags] -- COMMAND [ARGS...]")
	f := c.Flags()
	f.StringVar(&o.spec.IdempotencyKey, "idempotency-key", "", "submitting again with the same key returns the first job instead of a new one")
	f.BoolVar(&wait, "wait", false, "wait for the job to finish and exit with its exit code")
	f.Var((*durationFlag)(&waitTimeout), "wait-timeout", "with --wait, stop waiting after this long and exit 124 (the job goes on; default: wait until it ends)")
	return c
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// printJobs prints jobs as a table, or as a JSON array.
func (a *App) printJobs(jobs []*dspool.Job) error {
	return a.printJobsAs(jobs, jobs)
}

// printJob prints one job as a table, or as a JSON object.
func (a *App) printJob(j *dspool.Job) error {
	return a.printJobsAs(j, []*dspool.Job{j})
}

func (a *App) printJobsAs(v any, jobs []*dspool.Job) error {
	names := a.nodeNames(jobs)
	header := []string{"ID", "NAME", "USER", "TEAM", "POOL", "STATE", "REASON", "EXIT", "ATTEMPT", "NODE", "CPUS", "MEMORY", "GPUS", "AGE"}
	waiting := slices.ContainsFunc(jobs, func(j *dspool.Job) bool { return j.Waiting != "" })
	if waiting {
		header = append(header, "WAITING")
	}
	arrays := slices.ContainsFunc(jobs, func(j *dspool.Job) bool { return j.Array != nil })
	if arrays {
		header = append(header, "TASKS")
	}
	return a.print(v, header, func(add func(...any)) {
		for _, j := range jobs {
			if j.Array != nil {
				cols := []any{fmt.Sprintf("%d_[%s]", j.ID, j.Array.Indices), j.Name, j.User, dash(j.Team), j.Pool, j.Array.State(), "-", "-", "-", "-", j.CPUs, j.Memory, j.GPUs, age(j.SubmittedAt)}
				if waiting {
					cols = append(cols, dash(j.Waiting))
				}
				add(append(cols, taskCounts(j.Array))...)
				continue
			}
			exit := "-"
			if j.ExitCode != nil {
				exit = strconv.Itoa(*j.ExitCode)
			}
			state := string(j.State)
			if j.CancelRequested && j.State == dspool.JobRunning {
				state = "cancelling"
			}
			node := j.Node
			if n := names[node]; n != "" {
				node = n
			}
			cols := []any{j.Ref(), j.Name, j.User, dash(j.Team), j.Pool, state, dash(string(j.Reason)), exit, j.Attempt, dash(node), j.CPUs, j.Memory, j.GPUs, age(j.SubmittedAt)}
			if waiting {
				cols = append(cols, dash(j.Waiting))
			}
			if arrays {
				cols = append(cols, "-")
			}
			add(cols...)
		}
	})
}

// nodeNames maps node ids to names for tables (people know nodes by name);
// nothing when output is JSON or the lookup fails.
func (a *App) nodeNames(jobs []*dspool.Job) map[string]string {
	if ok, _ := a.json(); ok {
		return nil
	}
	need := false
	for _, j := range jobs {
		need = need || j.Node != ""
	}
	if !need {
		return nil
	}
	cl, err := a.client()
	if err != nil {
		return nil
	}
	nodes, err := cl.NodesWithGone(context.Background(), "")
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, n := range nodes {
		m[n.ID] = n.Name
	}
	return m
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// parseRef parses a job id, an array's id or a task (40_7).
func parseRef(s string) (string, error) {
	r, err := dspool.ParseTaskRef("ID", s)
	if err != nil {
		return "", dspool.Invalid("ID", "%q is not a job id: give a job id (12), an array (40) or one of its tasks (40_7), as `dspool job list` shows them", s)
	}
	return r.String(), nil
}

func (a *App) jobListCmd() *cobra.Command {
	var q api.JobQuery
	var states string
	c := &cobra.Command{
		Use: "list", Short: "List your jobs, newest first", Args: args(0, 0, "", "dspool job list --state running"),
		Long: `List your jobs, newest first. An array is one line, with how many of its
tasks are in each state; --array ID lists its tasks, --tasks every task of
every array.`,
		Example: "  dspool job list\n  dspool job list --state queued,running\n  dspool job list --all-users -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if states != "" {
				q.States = strings.Split(states, ",")
			}
			if _, err := a.json(); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			l, err := cl.Jobs(cmd.Context(), q)
			if err != nil {
				return withFlags(err, map[string]string{"limit": "--limit", "before": "--before", "state": "--state"})
			}
			if ok, _ := a.json(); len(l.Jobs) == 0 && !ok && q.Before == 0 {
				fmt.Fprintln(a.Stderr, noJobs(q))
			}
			if err := a.printJobs(l.Jobs); err != nil {
				return err
			}
			a.more(cmd, args, "jobs", l.Next)
			return nil
		},
	}
	c.Flags().StringVar(&states, "state", "", "only jobs in these states (comma-separated: queued,running,succeeded,failed,cancelled)")
	c.Flags().BoolVar(&q.AllUsers, "all-users", false, "every user's jobs (admin)")
	c.Flags().StringVar(&q.Pool, "pool", "", "only jobs of this pool")
	c.Flags().Int64Var(&q.Array, "array", 0, "only the tasks of this array")
	c.Flags().BoolVar(&q.Tasks, "tasks", false, "every task of an array on a line of its own")
	c.Flags().StringVar(&q.Schedule, "schedule", "", "only the runs of your schedule of this name")
	pageFlags(c, &q.Limit, 100, &q.Before, "jobs")
	return c
}

func (a *App) jobShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show ID", Short: "Show a job and its attempts", Args: args(1, 1, "one job id", "dspool job show 12"),
		Example: "  dspool job show 3\n  dspool job show 3 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, id, err := a.jobArg(args[0])
			if err != nil {
				return err
			}
			j, err := cl.JobRef(cmd.Context(), id)
			if err != nil {
				return err
			}
			if ok, err := a.json(); ok || err != nil {
				return a.print(j, nil, nil)
			}
			w := a.Stdout
			if j.Array != nil {
				a.showArray(j.Job)
				return nil
			}
			fmt.Fprintf(w, "Job %s: %s\n", j.Ref(), sanitize(j.Name))
			fmt.Fprintf(w, "  user:       %s\n", j.User)
			if j.Team != "" {
				fmt.Fprintf(w, "  team:       %s\n", j.Team)
			}
			if j.Schedule != "" {
				fmt.Fprintf(w, "  schedule:   %s", j.Schedule)
				if j.Slot != nil {
					fmt.Fprintf(w, " (slot %s)", j.Slot.Local().Format(time.DateTime))
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "  pool:       %s\n  state:      %s\n", j.Pool, j.State)
			fmt.Fprintf(w, "  priority:   %d\n", j.Priority)
			if j.Waiting != "" {
				fmt.Fprintf(w, "  waiting:    %s\n", sanitize(j.Waiting))
			}
			if j.Reason != "" {
				fmt.Fprintf(w, "  reason:     %s\n", j.Reason)
			}
			if j.ExitCode != nil {
				fmt.Fprintf(w, "  exit code:  %d\n", *j.ExitCode)
			}
			if j.Message != "" {
				fmt.Fprintf(w, "  message:    %s\n", sanitize(j.Message))
			}
			if j.After != "" {
				fmt.Fprintf(w, "  after:      %s\n", j.After)
			}
			fmt.Fprintf(w, "  command:    %s\n", sanitize(strings.Join(quoteArgs(j.Command), " ")))
			fmt.Fprintf(w, "  workdir:    %s\n", workdirOf(j.Job))
			fmt.Fprintf(w, "  resources:  %s, %s memory, %s", dspool.Plural(j.CPUs, "cpu"), j.Memory, dspool.Plural(j.GPUs, "gpu"))
			if gw := (dspool.GPUWant{Type: j.GPUType, Memory: j.GPUMemory}); !gw.Any() {
				fmt.Fprintf(w, " %s", sanitize(gw.String()))
			}
			if len(j.GPUIndices) > 0 {
				fmt.Fprintf(w, " (%v)", j.GPUIndices)
			}
			fmt.Fprintln(w)
			for _, g := range j.GPUsHeld {
				busy := ""
				if slices.Contains(j.GPUsBusy, g.Index) {
					busy = " (at work)"
				}
				fmt.Fprintf(w, "  gpu %-7d %s%s\n", g.Index, sanitize(gpuLine(g)), busy)
			}
			if len(j.Secrets) > 0 {
				fmt.Fprintf(w, "  secrets:    %s\n", sanitize(secretUses(j.Secrets)))
			}
			if j.Image != "" {
				fmt.Fprintf(w, "  image:      %s\n", sanitize(j.Image))
			}
			if j.TimeLimit > 0 {
				fmt.Fprintf(w, "  time limit: %s\n", time.Duration(j.TimeLimit))
			}
			fmt.Fprintf(w, "  attempt:    %d (retries allowed: %d)\n", j.Attempt, j.Retries)
			if j.Preemptible {
				fmt.Fprintf(w, "  preemptible: yes, preempted %s (which count against no retry)\n", dspool.Plural(j.Preemptions, "time"))
			}
			fmt.Fprintf(w, "  submitted:  %s\n", j.SubmittedAt.Local().Format(time.DateTime))
			if j.StartedAt != nil {
				fmt.Fprintf(w, "  started:    %s\n", j.StartedAt.Local().Format(time.DateTime))
			}
			if j.FinishedAt != nil {
				fmt.Fprintf(w, "  finished:   %s\n", j.FinishedAt.Local().Format(time.DateTime))
			}
			if len(j.Attempts) > 0 {
				names := a.nodeNames([]*dspool.Job{{Node: j.Attempts[0].Node}})
				fmt.Fprintln(w, "\nAttempts:")
				return a.print(nil, []string{"  #", "NODE", "STARTED", "FINISHED", "EXIT", "REASON", "MESSAGE"}, func(add func(...any)) {
					for _, at := range j.Attempts {
						exit := "-"
						if at.ExitCode != nil {
							exit = strconv.Itoa(*at.ExitCode)
						}
						node := at.Node
						if n := names[node]; n != "" {
							node = n
						}
						add(fmt.Sprintf("  %d", at.Number), node, clock(at.StartedAt), clock(at.FinishedAt), exit, dash(string(at.Reason)), dash(firstLine(at.Message)))
					}
				})
			}
			return nil
		},
	}
}

func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("15:04:05")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, s := range args {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?[]#~") {
			out[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		} else {
			out[i] = s
		}
	}
	return out
}

func (a *App) jobLogsCmd() *cobra.Command {
	var follow bool
	var attempt int
	c := &cobra.Command{
		Use: "logs ID", Short: "Print a job's output (stdout and stderr)", Args: args(1, 1, "one job id", "dspool job logs -f 12"),
		Long:    "Print a job's combined stdout and stderr, read from the share. With -f, keep printing until the attempt ends.",
		Example: "  dspool job logs 3\n  dspool job logs -f 3\n  dspool job logs --attempt 1 3",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, id, err := a.jobArg(args[0])
			if err != nil {
				return err
			}
			rc, err := cl.LogsRef(cmd.Context(), id, attempt, follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			var w io.Writer = a.Stdout
			if isTerminal(a.Stdout) {
				w = &escapingWriter{w: a.Stdout}
			}
			_, err = io.Copy(w, rc)
			if err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("the log stream broke: %w (run the command again to read it from the start)", err)
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the job's attempt ends")
	c.Flags().IntVar(&attempt, "attempt", 0, "which attempt (default the latest)")
	return c
}

// escapingWriter shows control characters instead of letting a job's
// output drive the user's terminal.
type escapingWriter struct{ w io.Writer }

func (e *escapingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(e.w, sanitize(strings.ToValidUTF8(string(p), "\uFFFD"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// jobArg parses a job id argument and returns a client to ask about it.
func (a *App) jobArg(s string) (*api.Client, string, error) {
	id, err := parseRef(s)
	if err != nil {
		return nil, "", err
	}
	cl, err := a.client()
	return cl, id, err
}

// eachJob applies fn to every job id in args, in order, stopping at the
// first error.
func (a *App) eachJob(args []string, fn func(*api.Client, string) (*dspool.Job, error)) ([]*dspool.Job, error) {
	var out []*dspool.Job
	for _, s := range args {
		cl, id, err := a.jobArg(s)
		if err != nil {
			return nil, err
		}
		j, err := fn(cl, id)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func (a *App) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use: "cancel ID...", Short: "Cancel jobs", Args: args(1, -1, "the ids of the jobs to cancel", "dspool job cancel 12 13"),
		Long:    "Cancel jobs: a queued job at once; a running job gets SIGTERM, then SIGKILL after the grace period, for its whole process tree. An array's id cancels every task that has not ended; ID_INDEX one task.",
		Example: "  dspool job cancel 12\n  dspool job cancel 13_0 13_1",
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := a.eachJob(args, func(cl *api.Client, id string) (*dspool.Job, error) {
				return cl.CancelRef(cmd.Context(), id)
			})
			if err != nil {
				return err
			}
			return a.printJobs(out)
		},
	}
}

func (a *App) jobWaitCmd() *cobra.Command {
	var timeout dspool.Duration
	c := &cobra.Command{
		Use: "wait ID...", Short: "Wait for jobs to finish", Args: args(1, -1, "the ids of the jobs to wait for", "dspool job wait 12 13"),
		Long:    "Wait until every job has finished (for an array's id, every task); exit 0 only if all succeeded.",
		Example: "  dspool job wait 3\n  dspool job wait --timeout 1h 3 4",
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := a.eachJob(args, func(cl *api.Client, id string) (*dspool.Job, error) {
				return a.waitOne(cmd.Context(), cl, id, time.Duration(timeout))
			})
			if err != nil {
				return err
			}
			if err := a.printJobs(out); err != nil {
				return err
			}
			for _, j := range out {
				if jobExit(j) != nil {
					return &ExitError{Code: 1}
				}
			}
			return nil
		},
	}
	c.Flags().Var((*durationFlag)(&timeout), "timeout", "give up after this long (default: wait forever)")
	return c
}

// gpuLine describes a GPU a job holds: its model, memory and UUID.
func gpuLine(g dspool.GPU) string {
	s := g.Name
	if g.Memory > 0 {
		s += ", " + g.Memory.String()
	}
	if g.UUID != "" {
		s += ", " + g.UUID
	}
	return s
}

// noJobs says why a job list came back empty, as a hint for people.
func noJobs(q api.JobQuery) string {
	switch {
	case q.Schedule != "":
		return "(no runs of schedule " + q.Schedule + " yet: `dspool schedule show " + q.Schedule + "` gives its next slot)"
	case len(q.States) > 0 || q.Pool != "" || q.Array != 0:
		return "(no jobs match: drop --state, --pool or --array to see all your jobs)"
	}
	return "(no jobs yet: submit one with `dspool job submit -- COMMAND`)"
}
