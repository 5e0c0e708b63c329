package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/spf13/cobra"
)

func (a *App) jobRerunCmd() *cobra.Command {
	var wait, failed bool
	c := &cobra.Command{
		Use:   "rerun ID",
		Short: "Submit a job again: a new job with the same command, resources and options",
		Long: `Submit a new job with the spec of job ID: its command, pool, team, resources,
time limit, retries, priority (your default one when the old one is past
your range), environment, secrets and working directory.
The new job has its own id, directory on the share and attempts; ID is left
as it is. An array's id submits a new array of the same tasks, each with its
own variables; with --failed, only the tasks that did not succeed.`,
		Example: "  dspool job rerun --wait 4\n  dspool job rerun 3\n  dspool job wait 5 || dspool job rerun --failed 5",
		Args:    args(1, 1, "one job id", "dspool job rerun 12"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseRef(args[0])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			old, err := cl.JobRef(cmd.Context(), id)
			if err != nil {
				return err
			}
			// The new job runs as whoever submits it, with paths of their
			// home: someone else's job is theirs to run again.
			if me, err := cl.WhoAmI(cmd.Context()); err != nil {
				return err
			} else if me.Name != old.User {
				return dspool.Errorf(dspool.EForbidden, "job %s is %s's: a rerun would run as you (%s), in your home; ask %s to rerun it, or submit it yourself with `dspool job submit`", id, old.User, me.Name, old.User)
			}
			spec := rerunSpec(old.Job)
			if old.Array != nil {
				if err := a.rerunArray(cmd.Context(), cl, old.Job, spec, failed); err != nil {
					return err
				}
			} else if failed {
				return dspool.Invalid("--failed", "job %s is not an array: rerun it without --failed", id)
			}
			j, err := cl.SubmitJob(cmd.Context(), spec, 30*time.Second)
			var e *dspool.Error
			if errors.As(err, &e) && e.Code == dspool.EInvalid && e.Field == "priority" {
				// A priority an admin or maintainer gave the old job may
				// be past the submitter's range: the rerun takes the
				// default rather than failing.
				fmt.Fprintf(a.Stderr, "job %s's priority %d is past your range (%s): the rerun gets your default priority\n", id, old.Priority, e.Message)
				spec.Priority = nil
				j, err = cl.SubmitJob(cmd.Context(), spec, 30*time.Second)
			}
			if err != nil {
				return err
			}
			if !wait {
				return a.printJob(j)
			}
			fmt.Fprintf(a.Stderr, "submitted job %s (a rerun of job %s)\n", j.Ref(), id)
			return a.waitSubmitted(cmd.Context(), cl, j, 0)
		},
	}
	c.Flags().BoolVar(&failed, "failed", false, "of an array, only the tasks that failed or were cancelled")
	c.Flags().BoolVar(&wait, "wait", false, "follow the new job as job submit --wait does, and exit with its exit code")
	return c
}

// rerunArray makes spec an array like old's: its indices (with --failed,
// those of the tasks that did not succeed), its cap, and each task's own
// variables as a sweep, read from its tasks.
func (a *App) rerunArray(ctx context.Context, cl *api.Client, old *dspool.Job, spec *dspool.JobSpec, failed bool) error {
	var tasks []*dspool.Job
	q := api.JobQuery{Array: old.ID, Limit: 10000}
	for {
		l, err := cl.Jobs(ctx, q)
		if err != nil {
			return err
		}
		tasks = append(tasks, l.Jobs...)
		if l.Next == 0 {
			break
		}
		q.Before = l.Next
	}
	slices.SortFunc(tasks, func(x, y *dspool.Job) int { return cmp.Compare(*x.ArrayIndex, *y.ArrayIndex) })
	if failed {
		tasks = slices.DeleteFunc(tasks, func(t *dspool.Job) bool { return t.State == dspool.JobSucceeded || !t.State.Terminal() })
		if len(tasks) == 0 {
			return dspool.Invalid("--failed", "no task of array %d failed or was cancelled: rerun the whole array without --failed", old.ID)
		}
	}
	ar := dspool.ArraySpec{MaxRunning: old.Array.MaxRunning}
	same := true
	for _, t := range tasks {
		ar.Indices = append(ar.Indices, *t.ArrayIndex)
		same = same && maps.Equal(t.Env, tasks[0].Env)
	}
	spec.Array = ar.String()
	if !same {
		spec.Env = nil
		for _, t := range tasks {
			spec.Sweep = append(spec.Sweep, maps.Clone(t.Env))
		}
	} else {
		spec.Env = maps.Clone(tasks[0].Env)
	}
	return nil
}

// rerunSpec is the spec of a new job like j, with a key of its own.
func rerunSpec(j *dspool.Job) *dspool.JobSpec {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &dspool.JobSpec{Pool: j.Pool, Team: j.Team, Name: j.Name, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs, GPUType: j.GPUType, GPUMemory: j.GPUMemory,
		TimeLimit: j.TimeLimit, Retries: j.Retries, Priority: &j.Priority, Env: maps.Clone(j.Env), Workdir: j.Workdir,
		Command: slices.Clone(j.Command), Secrets: slices.Clone(j.Secrets), Image: j.Image, IdempotencyKey: hex.EncodeToString(b)}
}
