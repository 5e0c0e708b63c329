package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
	"github.com/spf13/cobra"
)

// Arrays, holds and where a job runs.

func (a *App) jobHoldCmd(hold bool) *cobra.Command {
	use, short, long := "hold ID...", "Hold queued jobs: they stay queued until released",
		"Hold queued jobs: they stay queued, and no node is started for them, until `dspool job release`. An array's id holds every queued task."
	if !hold {
		use, short, long = "release ID...", "Release held jobs: they queue again",
			"Release jobs held with `dspool job hold` or submitted with --hold. An array's id releases every held task."
	}
	verb, _, _ := strings.Cut(use, " ")
	return &cobra.Command{
		Use: use, Short: short, Long: long,
		Args:    args(1, -1, "the ids of the jobs", "dspool job "+verb+" 12"),
		Example: fmt.Sprintf("  dspool job %s 4\n  dspool job %s 5", verb, verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := a.eachJob(args, func(cl *api.Client, id string) (*dspool.Job, error) {
				return cl.HoldRef(cmd.Context(), id, hold)
			})
			if err != nil {
				return err
			}
			return a.printJobs(out)
		},
	}
}

// readSweep reads the rows of --sweep FILE.
func readSweep(name string) ([]map[string]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, dspool.Invalid("--sweep", "%v", err)
	}
	defer f.Close()
	return dspool.ParseSweep("--sweep "+name, f)
}

// submitDir is the working directory of a job submitted from the current
// directory: its path in the user's home on the share, when it is there
// (found by the share's id file at the share's root), else "" (the job's
// own directory).
func (a *App) submitDir(ctx context.Context, cl *api.Client) string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	root := wd
	for {
		if _, err := os.Lstat(filepath.Join(root, share.IDFile)); err == nil {
			break
		}
		up := filepath.Dir(root)
		if up == root {
			return ""
		}
		root = up
	}
	rel, err := filepath.Rel(root, wd)
	if err != nil {
		return ""
	}
	me, err := cl.WhoAmI(ctx)
	if err != nil {
		return ""
	}
	home := share.Home(me.Name)
	if rel == home {
		return "."
	}
	if in, ok := strings.CutPrefix(rel, home+"/"); ok {
		return filepath.ToSlash(in)
	}
	return ""
}

// workdirOf says where a job runs, for job show.
func workdirOf(j *dspool.Job) string {
	if j.Workdir == "" {
		return share.JobDir(j.ID) + " on the share (the job's own directory)"
	}
	return filepath.Join(share.Home(j.User), j.Workdir) + " on the share"
}

// showArray prints an array as a whole.
func (a *App) showArray(j *dspool.Job) {
	w := a.Stdout
	ar := j.Array
	fmt.Fprintf(w, "Array %d: %s\n", j.ID, sanitize(j.Name))
	fmt.Fprintf(w, "  user:       %s\n", j.User)
	if j.Team != "" {
		fmt.Fprintf(w, "  team:       %s\n", j.Team)
	}
	fmt.Fprintf(w, "  pool:       %s\n  state:      %s\n", j.Pool, ar.State())
	fmt.Fprintf(w, "  tasks:      %d, indices %s", ar.Tasks, ar.Indices)
	if ar.MaxRunning > 0 {
		fmt.Fprintf(w, " (at most %d at once)", ar.MaxRunning)
	}
	fmt.Fprintf(w, "\n  states:     %s\n", taskCounts(ar))
	if j.Waiting != "" {
		fmt.Fprintf(w, "  waiting:    %s\n", sanitize(j.Waiting))
	}
	if j.After != "" {
		fmt.Fprintf(w, "  after:      %s\n", j.After)
	}
	fmt.Fprintf(w, "  command:    %s\n", sanitize(strings.Join(quoteArgs(j.Command), " ")))
	fmt.Fprintf(w, "  resources:  %s, %s memory, %s (each task)\n", dspool.Plural(j.CPUs, "cpu"), j.Memory, dspool.Plural(j.GPUs, "gpu"))
	fmt.Fprintf(w, "  submitted:  %s\n", j.SubmittedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "\nTasks: `dspool job list --array %d`; one task: `dspool job show %d_%d`\n", j.ID, j.ID, *j.ArrayIndex)
}
