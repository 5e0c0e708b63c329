// Command providers measures what a provider costs its engine, against a
// private Slurm cluster on this machine (Debian's slurm-wlm, as root): the
// Slurm commands (sbatch, squeue, scancel, scontrol) a pool runs per minute
// while it churns and while nothing changes, how long from the decision to
// the command that carries it out, and a job submitted to an empty Slurm
// pool -> running. Each Slurm command the control plane runs is counted by
// a wrapper on its PATH that logs the call, then runs the real one. It
// prints why and exits 0 where it cannot run (not root, no Slurm). See
// bench/README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/provider/slurm/slurmtest"
)

// Sizes are how much each measurement does.
type Sizes struct {
	ColdStarts int           `json:"cold_starts"`
	Churn      time.Duration `json:"churn_ns"`
	Quiet      time.Duration `json:"quiet_ns"`
}

// Result is everything measured.
type Result struct {
	Sizes Sizes `json:"sizes"`
	// ColdStartS: a job submitted to the Slurm pool at zero nodes ->
	// running, seconds, each run.
	ColdStartS   []float64 `json:"cold_start_s"`
	ColdStartP50 float64   `json:"cold_start_p50_s"`
	// ChurnPerMin and QuietPerMin are Slurm commands per minute, by
	// command, while jobs come and go and nodes with them, and while one
	// idle node stays and nothing changes (the loop passes 60 times a
	// minute).
	ChurnPerMin map[string]float64 `json:"churn_calls_per_min"`
	QuietPerMin map[string]float64 `json:"quiet_calls_per_min"`
	ChurnJobs   int                `json:"churn_jobs"`
	ChurnNodes  int                `json:"churn_nodes_added"`
	// SbatchP50Ms: a job submitted to a pool with no room -> its sbatch
	// starts (the decision, its join token, the command). ScancelP50Ms:
	// the scale-in decision (its event) -> scancel starts.
	SbatchP50Ms  float64 `json:"submit_to_sbatch_p50_ms"`
	ScancelP50Ms float64 `json:"scale_in_to_scancel_p50_ms"`
	Load1        float64 `json:"load1_before"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and log, the call log)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	n := Sizes{ColdStarts: 7, Churn: 3 * time.Minute, Quiet: time.Minute}
	if *short {
		n = Sizes{ColdStarts: 2, Churn: 40 * time.Second, Quiet: 20 * time.Second}
	}
	r, why, err := run(context.Background(), n, *keep)
	if why != "" {
		fmt.Println("providers: skipped:", why)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	report(r)
	if *jsonOut != "" {
		if err := host.WriteJSON(*jsonOut, r); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

var commands = []string{"sbatch", "squeue", "scancel", "scontrol"}

// wrappers writes a wrapper for each Slurm command into dir that logs
// "UNIXTIME COMMAND" to log, then runs the real command.
func wrappers(dir, log string) error {
	for _, c := range commands {
		real := filepath.Join("/usr/bin", c)
		body := fmt.Sprintf("#!/bin/sh\nprintf '%%s %s\\n' \"$(date +%%s.%%N)\" >> %s\nexec %s \"$@\"\n", c, log, real)
		if err := os.WriteFile(filepath.Join(dir, c), []byte(body), 0o755); err != nil {
			return err
		}
	}
	return nil
}

type call struct {
	at  time.Time
	cmd string
}

func calls(log string) []call {
	f, err := os.Open(log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ts, cmd, ok := strings.Cut(sc.Text(), " ")
		sec, err := strconv.ParseFloat(ts, 64)
		if ok && err == nil {
			out = append(out, call{time.Unix(0, int64(sec*1e9)), cmd})
		}
	}
	return out
}

// perMinute counts calls in [from, to) by command, per minute.
func perMinute(cs []call, from, to time.Time) map[string]float64 {
	out := map[string]float64{}
	for _, c := range commands {
		out[c] = 0
	}
	for _, c := range cs {
		if !c.at.Before(from) && c.at.Before(to) {
			out[c.cmd]++
		}
	}
	for k := range out {
		out[k] /= to.Sub(from).Minutes()
	}
	return out
}

func run(ctx context.Context, n Sizes, keep bool) (*Result, string, error) {
	if os.Geteuid() != 0 {
		return nil, "needs root: munged and slurmd run as root here", nil
	}
	if _, err := os.Stat("/usr/bin/sbatch"); err != nil {
		return nil, "Slurm is not installed (apt-get install slurm-wlm munge)", nil
	}
	r := &Result{Sizes: n, Load1: host.Load1()}
	cluster, why, err := slurmtest.Start(2, 2)
	if cluster == nil {
		return nil, why, err
	}
	defer cluster.Stop()
	tmp, done, err := host.TempDir("dspool-bench-providers-", keep)
	if err != nil {
		return nil, "", err
	}
	defer done()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, "", err
	}
	bin, err := host.BuildDspool(ctx, tmp)
	if err != nil {
		return nil, "", err
	}
	wrap := filepath.Join(tmp, "slurm-bin")
	log := filepath.Join(tmp, "slurm-calls.log")
	if err := os.MkdirAll(wrap, 0o755); err != nil {
		return nil, "", err
	}
	if err := wrappers(wrap, log); err != nil {
		return nil, "", err
	}
	os.Setenv("PATH", wrap+":"+os.Getenv("PATH"))
	os.Setenv("SLURM_CONF", cluster.Conf)
	data := filepath.Join(tmp, "data")
	up, err := host.StartUp(ctx, bin, tmp, []string{"--data", data, "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--heartbeat", "200ms", "--nodes", "0", "--admin", "dspoolslurm", "--uid-base", strconv.Itoa(host.FreeUIDBase(62000))},
		func(*api.Client) bool { return true })
	if err != nil {
		return nil, "", err
	}
	defer up.Stop()
	if !host.UserExists("dspoolslurm") {
		defer host.RemoveUser("dspoolslurm")
	}
	cl := up.Client
	settings := map[string]json.RawMessage{"partition": q(cluster.Partition), "dspool": q(bin), "share": q(data + "-share"),
		"state": q(filepath.Join(tmp, "agents")), "logs": q(tmp), "time": q("1h")}
	pool := &dspool.Pool{Name: "hpc", Provider: dspool.ProviderSpec{Name: "slurm", Settings: settings}, Work: []dspool.Work{dspool.WorkBatch},
		Node:      dspool.NodeSize{CPUs: 1000, Memory: 256 << 20},
		Autoscale: &dspool.Autoscale{Max: 4, IdleTimeout: dspool.Duration(2 * time.Second)}}
	if _, err := cl.ApplyPools(ctx, []*dspool.Pool{pool}); err != nil {
		return nil, "", err
	}

	// 1. Cold starts: the pool at zero, a job -> running.
	var toSbatch []float64
	for i := range n.ColdStarts {
		if err := host.Poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
			ns, err := cl.Nodes(ctx, pool.Name)
			return err == nil && len(ns) == 0, err
		}); err != nil {
			return nil, "", fmt.Errorf("cold start %d: the pool did not return to zero nodes: %w", i+1, err)
		}
		// Past the last scancel, and its squeue.
		time.Sleep(3 * time.Second)
		before := len(calls(log))
		j, err := cl.SubmitJob(ctx, &dspool.JobSpec{Pool: pool.Name, CPUs: 1000, Memory: 64 << 20, Command: []string{"true"}}, 0)
		if err != nil {
			return nil, "", err
		}
		for !j.State.Terminal() {
			if j, err = cl.WaitJob(ctx, j.ID, time.Minute); err != nil {
				return nil, "", err
			}
		}
		if j.State != dspool.JobSucceeded || j.StartedAt == nil {
			return nil, "", fmt.Errorf("cold start %d: job %d ended %s: %s", i+1, j.ID, j.State, j.Message)
		}
		s := j.StartedAt.Sub(j.SubmittedAt).Seconds()
		r.ColdStartS = append(r.ColdStartS, s)
		for _, c := range calls(log)[before:] {
			if c.cmd == "sbatch" {
				toSbatch = append(toSbatch, float64(c.at.Sub(j.SubmittedAt).Microseconds())/1000)
				break
			}
		}
		host.Logf("cold start %d: %.3f s", i+1, s)
	}
	r.ColdStartP50 = p50(r.ColdStartS)

	// 2. Churn: a job of 1-3 s every 1.5 s, several at a time now and then,
	// nodes idle 2 s leave.
	host.Logf("churn: %s", n.Churn)
	from := time.Now()
	tick := time.NewTicker(1500 * time.Millisecond)
	var ids []int64
	for i := 0; time.Since(from) < n.Churn; i++ {
		<-tick.C
		burst := 1
		if i%10 == 0 {
			burst = 3
		}
		for range burst {
			secs := 1 + i%3
			j, err := cl.SubmitJob(ctx, &dspool.JobSpec{Pool: pool.Name, CPUs: 1000, Memory: 64 << 20, Command: []string{"sleep", strconv.Itoa(secs)}}, 0)
			if err != nil {
				return nil, "", err
			}
			ids = append(ids, j.ID)
		}
		if i%10 == 5 {
			// A quiet spell: the idle nodes go.
			time.Sleep(4 * time.Second)
		}
	}
	tick.Stop()
	to := time.Now()
	for _, id := range ids {
		for {
			j, err := cl.WaitJob(ctx, id, time.Minute)
			if err != nil {
				return nil, "", err
			}
			if j.State.Terminal() {
				break
			}
		}
	}
	r.ChurnJobs = len(ids)
	r.ChurnPerMin = perMinute(calls(log), from, to)

	// Decision -> scancel: each scale_in event to the next scancel.
	evs, err := cl.PoolEvents(ctx, pool.Name, time.Hour, 1000)
	if err != nil {
		return nil, "", err
	}
	all := calls(log)
	var toScancel []float64
	for _, e := range evs {
		switch e.Kind {
		case dspool.EventScaleOut:
			if !e.At.Before(from) && e.At.Before(to) {
				r.ChurnNodes += len(e.Nodes)
			}
		case dspool.EventScaleIn:
			for _, c := range all {
				if c.cmd == "scancel" && !c.at.Before(e.At.Add(-50*time.Millisecond)) {
					toScancel = append(toScancel, float64(c.at.Sub(e.At).Microseconds())/1000)
					break
				}
			}
		}
	}
	r.SbatchP50Ms, r.ScancelP50Ms = p50(toSbatch), p50(toScancel)

	// 3. Quiet: one idle node that stays (min 1), nothing else happens.
	pool.Autoscale.Min = 1
	if _, err := cl.ApplyPools(ctx, []*dspool.Pool{pool}); err != nil {
		return nil, "", err
	}
	if err := host.Poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
		ns, err := cl.Nodes(ctx, pool.Name)
		return err == nil && len(ns) == 1 && ns[0].State == dspool.NodeReady, err
	}); err != nil {
		return nil, "", fmt.Errorf("the pool's one node did not become ready: %w", err)
	}
	// Past the reads that a new node's creation asks for.
	time.Sleep(10 * time.Second)
	host.Logf("quiet: %s", n.Quiet)
	qfrom := time.Now()
	time.Sleep(n.Quiet)
	r.QuietPerMin = perMinute(calls(log), qfrom, time.Now())
	return r, "", nil
}

func q(s string) json.RawMessage { return json.RawMessage(strconv.Quote(s)) }

func p50(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[(len(s)-1)/2]
}

func report(r *Result) {
	fmt.Printf("providers: Slurm (Debian slurm-wlm, 2 nodes x 2 cpus on this machine), load %.2f before\n", r.Load1)
	fmt.Printf("  job submitted to an empty Slurm pool -> running: p50 %.2f s (%d runs: %v)\n", r.ColdStartP50, len(r.ColdStartS), r.ColdStartS)
	fmt.Printf("  decision -> API call: submit -> sbatch p50 %.0f ms; scale-in decision -> scancel p50 %.0f ms\n", r.SbatchP50Ms, r.ScancelP50Ms)
	line := func(what string, m map[string]float64) {
		var parts []string
		total := 0.0
		for _, c := range commands {
			parts = append(parts, fmt.Sprintf("%s %.1f", c, m[c]))
			total += m[c]
		}
		fmt.Printf("  %s: %.1f Slurm calls/min (%s)\n", what, total, strings.Join(parts, ", "))
	}
	line(fmt.Sprintf("churn (%d jobs, %d nodes added, %s)", r.ChurnJobs, r.ChurnNodes, r.Sizes.Churn), r.ChurnPerMin)
	line(fmt.Sprintf("quiet (1 idle node, %s; the loop passes 60 times a minute)", r.Sizes.Quiet), r.QuietPerMin)
}
