package cli

import (
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) notebookCmd() *cobra.Command {
	c := &cobra.Command{Use: "notebook", Short: "Your Jupyter server on the pool",
		Long: `Your own Jupyter server runs in your session of an interactive pool (on the
node your SSH logins use, sharing its reservation), with your home on the
share as its notebook directory. It is reached through the pool's address at
/user/NAME/ with your credentials; its own secret never leaves the pool.`,
		Example: "  dspool notebook start --wait\n  dspool notebook status\n  dspool notebook stop",
	}
	var pool, profile string
	var wait bool
	var timeout time.Duration
	start := &cobra.Command{
		Use: "start [--pool POOL] [--profile NAME] [--wait]", Short: "Start your Jupyter server", Args: cobra.NoArgs,
		Example: "  dspool notebook start --wait\n  dspool notebook start --pool highmem",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nb, err := cl.StartNotebookProfile(cmd.Context(), pool, profile)
			if err != nil {
				return err
			}
			if wait {
				began := time.Now()
				p := a.progress()
				for nb.State == dspool.NotebookStarting {
					line := fmt.Sprintf("starting your Jupyter server on node %s", nb.NodeName)
					if nb.NodeName == "" && nb.Message != "" { // waiting for a node
						line = nb.Message
					}
					p.update(fmt.Sprintf("%s, %d s", line, int(time.Since(began).Seconds())))
					if time.Since(began) > timeout {
						p.done()
						return fmt.Errorf("your Jupyter server is still starting after %s: see `dspool notebook status`", timeout)
					}
					select {
					case <-cmd.Context().Done():
						p.done()
						return cmd.Context().Err()
					case <-time.After(200 * time.Millisecond):
					}
					if nb, err = cl.Notebook(cmd.Context()); err != nil {
						p.done()
						return err
					}
				}
				p.done()
				if nb.State != dspool.NotebookReady {
					return fmt.Errorf("your Jupyter server %s: %s", nb.State, nb.Message)
				}
			}
			return a.printNotebook(nb)
		},
	}
	start.Flags().StringVar(&pool, "pool", "", "interactive pool (default: the default interactive pool)")
	start.Flags().StringVar(&profile, "profile", "", "the size of its session: a profile of the pool (small, large, gpu: dspool pool show POOL lists them), or 8cpu-64gib-1gpu (default: the pool's session size)")
	start.Flags().BoolVar(&wait, "wait", false, "wait until it serves, showing progress")
	start.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: how long to wait")
	status := &cobra.Command{
		Use: "status", Short: "Show your Jupyter server's state", Args: cobra.NoArgs, Example: "  dspool notebook status -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nb, err := cl.Notebook(cmd.Context())
			if err != nil {
				return err
			}
			return a.printNotebook(nb)
		},
	}
	stop := &cobra.Command{
		Use: "stop", Short: "Stop your Jupyter server", Args: cobra.NoArgs, Example: "  dspool notebook stop",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			nb, err := cl.StopNotebook(cmd.Context())
			if err != nil {
				return err
			}
			return a.printNotebook(nb)
		},
	}
	c.AddCommand(start, status, stop)
	return c
}

func (a *App) printNotebook(nb *dspool.Notebook) error {
	return a.print(nb, []string{"USER", "STATE", "POOL", "NODE", "URL", "STARTED", "IDLE STOP", "MESSAGE"}, func(add func(...any)) {
		started, stops := "-", "-"
		if !nb.StartedAt.IsZero() {
			started = age(nb.StartedAt) + " ago"
		}
		if nb.StopsAt != nil && nb.State == dspool.NotebookReady {
			stops = "in " + time.Until(*nb.StopsAt).Round(time.Second).String() + " if unused"
		}
		add(nb.User, nb.State, dash(nb.Pool), dash(nb.NodeName), nb.URL, started, stops, dash(nb.Message))
	})
}
