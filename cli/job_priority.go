package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) jobPriorityCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "priority ID PRIORITY", Short: "Change a queued job's priority (admins; maintainers of its team; its owner, lower)",
		Args: args(2, 2, "a job id and its new priority", "dspool job priority 12 50"),
		Long: `Change the priority of a queued job: higher runs first. An array's id
changes every queued task of it; ID_INDEX one task. An admin may give any
priority (-1000 to 1000); a maintainer of the job's team one within the
team's range (0 or below when it has none); the job's owner one they could
submit with, or a lower one. Put -- before a negative priority.`,
		Example: "  dspool job priority 4 50\n  dspool job priority 5 10\n  dspool job priority 4 -- -100",
		RunE: func(cmd *cobra.Command, argv []string) error {
			p, err := strconv.Atoi(argv[1])
			if err != nil {
				return dspool.Invalid("priority", "%q is not a whole number: give one from -1000 to 1000", argv[1])
			}
			cl, id, err := a.jobArg(argv[0])
			if err != nil {
				return err
			}
			j, err := cl.SetPriority(cmd.Context(), id, p)
			if err != nil {
				return err
			}
			if ok, err := a.json(); ok || err != nil {
				return a.print(j, nil, nil)
			}
			fmt.Fprintf(a.Stdout, "job %s: priority %d\n", argv[0], p)
			return nil
		},
	}
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if strings.HasPrefix(err.Error(), "unknown shorthand flag") {
			return fmt.Errorf("%w: for a negative priority put -- before it: dspool job priority 12 -- -100", err)
		}
		return err
	})
	return c
}
