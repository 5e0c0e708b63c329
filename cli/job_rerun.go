package cli

import (
	"fmt"

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
			j, err := cl.Rerun(cmd.Context(), id, failed, func(old int, why string) {
				fmt.Fprintf(a.Stderr, "job %s's priority %d is past your range (%s): the rerun gets your default priority\n", id, old, why)
			})
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
