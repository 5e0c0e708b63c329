package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/dspool/dspool"
	"github.com/spf13/cobra"
)

func (a *App) usageCmd() *cobra.Command {
	var since, by string
	c := &cobra.Command{
		Use:   "usage",
		Short: "Report node time and cost by pool, or job and session time by user",
		Long: `Report the use of the pools over a window that ends now.

By user: the wall time of each user's job attempts (job hours), that time
times the cpus and GPUs each job held (cpu and GPU hours), and the time their
SSH and Jupyter sessions were open (session hours). An admin sees every user
who used anything; anyone else sees only themselves.

By pool: the time of every node from its creation until it was gone (lost,
failed and draining nodes count until then), and its cost at the pool's
price_per_node_hour. A pool that no longer exists has no price.

Intervals are cut to the window; running attempts, open sessions and live
nodes count until now. Tables show hours; -o json and -o csv give seconds.`,
		Args: args(0, 0, "", "dspool usage --by pool"),
		Example: `  dspool usage
  dspool usage --by pool --since 7d
  dspool usage --since 24h -o json
  dspool usage --by pool -o csv > usage.csv`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			span, err := dspool.ParseSpan(since)
			if err != nil || span == 0 {
				return dspool.Invalid("--since", "%q is not a span of time: use e.g. 24h, 7d or 720h (30 days)", since)
			}
			group, err := dspool.ParseUsageBy("--by", by)
			if err != nil {
				return err
			}
			switch a.output {
			case "table", "", "json", "csv":
			default:
				return dspool.Invalid("--output", "%q is not an output format for usage: use table, json or csv", a.output)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			rep, err := cl.Usage(cmd.Context(), span, group)
			if err != nil {
				return err
			}
			switch a.output {
			case "json":
				enc := json.NewEncoder(a.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			case "csv":
				return a.usageCSV(rep)
			}
			return a.usageTable(rep)
		},
	}
	c.Flags().StringVar(&since, "since", "720h", "the window: the last span of time, e.g. 24h, 7d, 720h (30 days)")
	c.Flags().StringVar(&by, "by", "user", "group by user or pool")
	return c
}

// hours prints seconds as hours with two decimals; some use below a
// hundredth of an hour reads <0.01, not as none.
func hours(secs float64) string {
	if h := secs / 3600; h > 0 && h < 0.005 {
		return "<0.01"
	}
	return fmt.Sprintf("%.2f", secs/3600)
}

func (a *App) usageTable(rep *dspool.UsageReport) error {
	fmt.Fprintf(a.Stderr, "(usage from %s to %s)\n", rep.Since.Local().Format("2006-01-02 15:04"), rep.Until.Local().Format("2006-01-02 15:04"))
	if rep.By == dspool.UsageByPool {
		return a.print(rep, []string{"POOL", "NODE HOURS", "PRICE/NODE-HOUR", "COST"}, func(add func(...any)) {
			var secs, cost float64
			for _, p := range rep.Pools {
				add(p.Pool, hours(p.NodeSeconds), fmt.Sprintf("%.2f", p.PricePerNodeHour), fmt.Sprintf("%.2f", p.Cost))
				secs += p.NodeSeconds
				cost += p.Cost
			}
			if len(rep.Pools) > 1 {
				add("TOTAL", hours(secs), "-", fmt.Sprintf("%.2f", cost))
			}
		})
	}
	return a.print(rep, []string{"USER", "JOB HOURS", "CPU HOURS", "GPU HOURS", "SESSION HOURS"}, func(add func(...any)) {
		for _, u := range rep.Users {
			add(u.User, hours(u.JobSeconds), hours(u.CPUSeconds), hours(u.GPUSeconds), hours(u.SessionSeconds))
		}
	})
}

// usageCSV writes the report's rows as CSV (RFC 4180) with a header row
// whose names are the JSON fields.
func (a *App) usageCSV(rep *dspool.UsageReport) error {
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	w := csv.NewWriter(a.Stdout)
	if rep.By == dspool.UsageByPool {
		_ = w.Write([]string{"pool", "node_seconds", "node_hours", "price_per_node_hour", "cost"})
		for _, p := range rep.Pools {
			_ = w.Write([]string{p.Pool, num(p.NodeSeconds), num(p.NodeHours), num(p.PricePerNodeHour), num(p.Cost)})
		}
	} else {
		_ = w.Write([]string{"user", "job_seconds", "cpu_seconds", "gpu_seconds", "session_seconds"})
		for _, u := range rep.Users {
			_ = w.Write([]string{u.User, num(u.JobSeconds), num(u.CPUSeconds), num(u.GPUSeconds), num(u.SessionSeconds)})
		}
	}
	w.Flush()
	return w.Error()
}
