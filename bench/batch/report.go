package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/dspool/dspool/bench/internal/host"
	"io"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"
)

// runPeer brings the Slurm peer up in dir (unless SLURM_BENCH_DIR is set),
// measures it with the same sizes and takes it down. It returns the JSON
// line the peer printed, with an error if it failed.
func runPeer(ctx context.Context, script, dir string, n Sizes) (map[string]any, error) {
	peer := func(ctx context.Context, verb string, env ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "bash", script, verb)
		cmd.Env = append([]string{"SLURM_BENCH_DIR=" + dir}, append(os.Environ(), env...)...)
		cmd.Stderr = os.Stderr // the peer's progress
		return cmd.Output()
	}
	host.Logf("slurm: %s up", script)
	if _, err := peer(ctx, "up"); err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := peer(ctx, "down"); err != nil {
			host.Logf("slurm: down: %v", err)
		}
	}()
	out, err := peer(ctx, "measure", fmt.Sprint("N_SUBMIT=", n.CLI), fmt.Sprint("N_MAKESPAN=", n.Makespan),
		fmt.Sprint("N_LATENCY=", n.Latency), fmt.Sprint("PARALLEL=", procs), fmt.Sprint("N_ARRAY=", n.Array), fmt.Sprint("N_CHAIN=", n.Chain),
		"PHASES=submit makespan latency array chain")
	var m map[string]any
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if jerr := json.Unmarshal(lines[len(lines)-1], &m); jerr != nil && err == nil {
		err = fmt.Errorf("no JSON line from measure: %w", jerr)
	}
	if err != nil {
		return m, fmt.Errorf("measure: %w (%v)", err, m["error"])
	}
	return m, nil
}

// Row is one line of the table; Ratio is dspool / slurm.
type Row struct {
	Metric string   `json:"metric"`
	Dspool float64  `json:"dspool"`
	Slurm  *float64 `json:"slurm"`
	Ratio  *float64 `json:"ratio"`
	Target string   `json:"target,omitempty"`
	Status string   `json:"status,omitempty"` // met, MISSED, or no peer figure
}

func report(w io.Writer, jsonOut string, n Sizes, r *Result, slurm map[string]any, peerNote string) error {
	sl := func(key string) *float64 {
		if v, ok := slurm[key].(float64); ok {
			return &v
		}
		return nil
	}
	rows := []Row{
		{Metric: fmt.Sprintf("API submissions/s (%d jobs, %d clients)", n.API, clients), Dspool: r.APISubmitPerS},
		{Metric: fmt.Sprintf("CLI submissions/s (%d jobs, %d procs)", n.CLI, procs), Dspool: r.CLISubmitPerS,
			Slurm: sl("submit_per_s"), Target: ">= 1.0x slurm"},
		{Metric: fmt.Sprintf("makespan of %d jobs (s)", n.Makespan), Dspool: r.MakespanS, Slurm: sl("makespan_s"), Target: "<= slurm/20"},
		{Metric: "makespan, all seen finished (s)", Dspool: r.MakespanDrainS, Slurm: sl("makespan_drain_s")},
		{Metric: fmt.Sprintf("submit->start p50 (ms, %d jobs)", n.Latency), Dspool: r.LatencyP50Ms, Slurm: sl("latency_p50_ms"), Target: "<= 50 ms"},
		{Metric: fmt.Sprintf("submit->start p90 (ms, %d jobs)", n.Latency), Dspool: r.LatencyP90Ms, Slurm: sl("latency_p90_ms")},
		{Metric: fmt.Sprintf("array of %d tasks, submit -> last end (s)", n.Array), Dspool: r.ArrayS, Slurm: sl("array_s"), Target: "<= slurm/20"},
		{Metric: fmt.Sprintf("chain of %d, first start -> last end (s)", n.Chain), Dspool: r.ChainS, Slurm: sl("chain_s"), Target: "<= slurm/10"},
		{Metric: fmt.Sprintf("submit an array of %d tasks (s)", n.BigArray), Dspool: r.BigArraySubmitS, Target: "<= 2 s"},
		{Metric: "  control plane memory growth (MiB)", Dspool: r.BigArrayRSSMiB, Target: "<= 100 MB"},
		{Metric: fmt.Sprintf("preemption, victim checkpoints 1s: p50 (s, grace %gs)", r.PreemptGraceS), Dspool: r.PreemptCkptP50S},
		{Metric: "  max (s)", Dspool: r.PreemptCkptMaxS, Target: "<= grace + 2 s"},
		{Metric: "preemption, victim waits for SIGKILL: p50 (s)", Dspool: r.PreemptKillP50S},
		{Metric: "  max (s)", Dspool: r.PreemptKillMaxS, Target: "<= grace + 2 s"},
		{Metric: "load1 before", Dspool: r.Load1Before, Slurm: sl("load1_start")},
		{Metric: "load1 after", Dspool: r.Load1After, Slurm: sl("load1")},
	}
	for i := range rows {
		if s := rows[i].Slurm; s != nil && *s != 0 {
			ratio := rows[i].Dspool / *s
			rows[i].Ratio = &ratio
		}
	}
	met := func(i int, ok bool) { rows[i].Status = map[bool]string{true: "met", false: "MISSED"}[ok] }
	rows[1].Status, rows[2].Status = "no peer figure", "no peer figure"
	if s := rows[1].Slurm; s != nil {
		met(1, r.CLISubmitPerS >= *s)
	}
	if s := rows[2].Slurm; s != nil {
		met(2, r.MakespanS <= *s/20)
	}
	met(4, r.LatencyP50Ms <= 50)
	for i, div := range map[int]float64{6: 20, 7: 10} {
		rows[i].Status = "no peer figure"
		if s := rows[i].Slurm; s != nil {
			met(i, rows[i].Dspool <= *s/div)
		}
	}
	met(8, r.BigArraySubmitS <= 2)
	met(9, r.BigArrayRSSMiB <= 100e6/(1<<20))
	met(11, r.PreemptCkptMaxS <= r.PreemptGraceS+2)
	met(13, r.PreemptKillMaxS <= r.PreemptGraceS+2)

	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "metric\t dspool\t slurm\t ratio\t target")
	for _, x := range rows {
		sl, ratio, target := "-", "-", x.Target
		if x.Slurm != nil {
			sl = num(*x.Slurm)
		}
		if x.Ratio != nil {
			ratio = fmt.Sprintf("%.3gx", *x.Ratio)
		}
		if x.Status != "" {
			target += " (" + x.Status + ")"
		}
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t %s\n", x.Metric, num(x.Dspool), sl, ratio, target)
	}
	tw.Flush()
	fmt.Fprintf(w, "dspool: makespan jobs submitted in %.2fs; latency min %.1f max %.1f ms; %.0f API cancels/s\n",
		r.MakespanSubmitS, r.LatencyMinMs, r.LatencyMaxMs, r.APICancelPerS)
	if peerNote != "" {
		fmt.Fprintln(w, "slurm peer:", peerNote)
	}
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "sizes": n, "dspool": r,
		"slurm": slurm, "peer_note": peerNote, "rows": rows}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonOut, append(b, '\n'), 0o644)
}

func num(f float64) string {
	if f >= 100 || f <= -100 {
		return fmt.Sprintf("%.0f", f)
	}
	return fmt.Sprintf("%.3g", f)
}

// reportStores prints the figures measured on both stores side by side.
func reportStores(w io.Writer, lite, pg *Result) {
	fmt.Fprintln(w, "\nthe store: SQLite (the default) against PostgreSQL, same run")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tSQLite\tPostgreSQL\tPostgreSQL/SQLite\t")
	row := func(name string, a, b float64, higherBetter bool) {
		ratio := b / a
		if !higherBetter {
			ratio = a / b
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.2f×\t\n", name, a, b, ratio)
	}
	row("API submissions/s", lite.APISubmitPerS, pg.APISubmitPerS, true)
	row("API cancels/s", lite.APICancelPerS, pg.APICancelPerS, true)
	row("CLI submissions/s", lite.CLISubmitPerS, pg.CLISubmitPerS, true)
	row("makespan s", lite.MakespanS, pg.MakespanS, false)
	row("submit -> start p50 ms", lite.LatencyP50Ms, pg.LatencyP50Ms, false)
	row("submit -> start p90 ms", lite.LatencyP90Ms, pg.LatencyP90Ms, false)
	tw.Flush()
	fmt.Fprintln(w, "(the last column is PostgreSQL's speed as a share of SQLite's: 1.00× is as fast, target ≥ 0.50×)")
}
