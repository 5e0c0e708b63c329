package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) jobRerunCmd() *cobra.Command {
	var wait bool
	c := &cobra.Command{
		Use:   "rerun ID",
		Short: "Submit a job again: a new job with the same command, resources and options",
		Long: `Submit a new job with the spec of job ID: its command, pool, team, resources,
time limit, retries, priority, environment, secrets and working directory.
The new job has its own id, directory on the share and attempts; ID is left
as it is.`,
		Example: "  dspool job rerun 12\n  dspool job rerun --wait 12",
		Args:    args(1, 1, "one job id", "dspool job rerun 12"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			old, err := cl.Job(cmd.Context(), id)
			if err != nil {
				return err
			}
			// The new job runs as whoever submits it, with paths of their
			// home: someone else's job is theirs to run again.
			if me, err := cl.WhoAmI(cmd.Context()); err != nil {
				return err
			} else if me.Name != old.User {
				return dspool.Errorf(dspool.EForbidden, "job %d is %s's: a rerun would run as you (%s), in your home; ask %s to rerun it, or submit it yourself with `dspool job submit`", id, old.User, me.Name, old.User)
			}
			spec := rerunSpec(old.Job)
			j, err := cl.SubmitJob(cmd.Context(), spec, 30*time.Second)
			if err != nil {
				return err
			}
			if !wait {
				return a.printJob(j)
			}
			fmt.Fprintf(a.Stderr, "submitted job %d (a rerun of job %d)\n", j.ID, id)
			return a.waitSubmitted(cmd.Context(), cl, j.ID, 0)
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "follow the new job as `job submit --wait` does, and exit with its exit code")
	return c
}

// rerunSpec is the spec of a new job like j, with a key of its own.
func rerunSpec(j *dspool.Job) *dspool.JobSpec {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &dspool.JobSpec{Pool: j.Pool, Team: j.Team, Name: j.Name, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs,
		TimeLimit: j.TimeLimit, Retries: j.Retries, Priority: j.Priority, Env: maps.Clone(j.Env), Workdir: j.Workdir,
		Command: slices.Clone(j.Command), Secrets: slices.Clone(j.Secrets), Image: j.Image, IdempotencyKey: hex.EncodeToString(b)}
}
