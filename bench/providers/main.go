// Command providers measures what a provider costs its engine: the calls a
// pool makes per minute while it churns and while nothing changes, how
// long from the decision to the call that carries it out, and a job
// submitted to an empty pool -> running. Two engines: a private Slurm
// cluster on this machine (Debian's slurm-wlm, as root), whose commands
// the control plane runs are counted by wrappers on its PATH that log each
// call, then run the real one; and a local fake of Azure Resource Manager
// (provider/azurevmss/armfake), which records every request, with an agent
// started for each instance from its custom data, as its cloud-init would;
// and a real kube-apiserver on etcd behind a proxy that records every
// request, with a kubelet stand-in that runs each pod's agent.
// An engine that cannot run here says why and is skipped. See
// bench/README.md.
package main

import (
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
)

// Sizes are how much each measurement does.
type Sizes struct {
	ColdStarts int           `json:"cold_starts"`
	Churn      time.Duration `json:"churn_ns"`
	Quiet      time.Duration `json:"quiet_ns"`
}

// Result is everything measured on one engine.
type Result struct {
	Engine string   `json:"engine"`
	Kinds  []string `json:"call_kinds"`
	Sizes  Sizes    `json:"sizes"`
	// ColdStartS: a job submitted to the Slurm pool at zero nodes ->
	// running, seconds, each run.
	ColdStartS   []float64 `json:"cold_start_s"`
	ColdStartP50 float64   `json:"cold_start_p50_s"`
	// AboveStartS: the same job's running, less when its machine started
	// (Kubernetes: the pod marked Running), seconds, for engines that tell.
	AboveStartS   []float64 `json:"above_machine_start_s,omitempty"`
	AboveStartP50 float64   `json:"above_machine_start_p50_s,omitempty"`
	// ChurnPerMin and QuietPerMin are calls to the engine per minute, by
	// kind (Slurm: its command; Azure: the request's method and what it
	// is about), while jobs come and go and nodes with them, and while one
	// idle node stays and nothing changes (the loop passes 60 times a
	// minute).
	ChurnPerMin map[string]float64 `json:"churn_calls_per_min"`
	QuietPerMin map[string]float64 `json:"quiet_calls_per_min"`
	ChurnJobs   int                `json:"churn_jobs"`
	ChurnNodes  int                `json:"churn_nodes_added"`
	// GrowP50Ms: a job submitted to a pool with no room -> the call that
	// asks for a machine (sbatch; the scale set's PATCH) starts (the
	// decision, its join token, the call). RemoveP50Ms: the scale-in
	// decision (its event) -> the call that removes it (scancel;
	// deleteInstances).
	GrowP50Ms   float64 `json:"submit_to_grow_call_p50_ms"`
	RemoveP50Ms float64 `json:"scale_in_to_remove_call_p50_ms"`
	Load1       float64 `json:"load1_before"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	keep := flag.Bool("keep", false, "keep the temporary directories (dspool's data and log, the call logs)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	only := flag.String("engine", "", "run one engine only: slurm, azure or kubernetes")
	flag.Parse()
	n := Sizes{ColdStarts: 7, Churn: 3 * time.Minute, Quiet: time.Minute}
	if *short {
		n = Sizes{ColdStarts: 2, Churn: 40 * time.Second, Quiet: 20 * time.Second}
	}
	results := map[string]*Result{}
	for _, e := range []struct {
		name string
		make func() (*engine, string, error)
	}{{"slurm", slurmEngine}, {"azure", azureEngine}, {"kubernetes", kubernetesEngine}} {
		if *only != "" && *only != e.name {
			continue
		}
		r, why, err := measure(context.Background(), n, *keep, e.name, e.make)
		if why != "" {
			fmt.Printf("providers: %s skipped: %s\n", e.name, why)
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", e.name+":", err)
			os.Exit(1)
		}
		report(r)
		results[e.name] = r
	}
	if *jsonOut != "" {
		if err := host.WriteJSON(*jsonOut, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// engine is what the measurement needs of an engine: the provider block of
// its pool, the calls made to it so far, and the kinds of call that grow
// and shrink a pool.
type engine struct {
	name     string
	kinds    []string
	grow     string // the kind of call that asks for a machine
	remove   string // the kind of call that removes one
	settings func(bin, share, tmp string) (dspool.ProviderSpec, error)
	calls    func() []call
	// machineStart, if set, returns when the first machine started after
	// since (its pod marked Running).
	machineStart func(since time.Time) time.Time
	// start runs what stands in for the engine's machines, if anything,
	// once dspool runs; stop ends it all.
	start func(ctx context.Context, bin, tmp string)
	stop  func()
}

type call struct {
	at  time.Time
	cmd string
}

// perMinute counts calls in [from, to) by kind, per minute.
func perMinute(kinds []string, cs []call, from, to time.Time) map[string]float64 {
	out := map[string]float64{}
	for _, k := range kinds {
		out[k] = 0
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

func measure(ctx context.Context, n Sizes, keep bool, short string, make func() (*engine, string, error)) (*Result, string, error) {
	if os.Geteuid() != 0 {
		return nil, "needs root: the agents run jobs as their users (and munged and slurmd run as root)", nil
	}
	eng, why, err := make()
	if eng == nil {
		return nil, why, err
	}
	defer eng.stop()
	r := &Result{Engine: eng.name, Kinds: eng.kinds, Sizes: n, Load1: host.Load1()}
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
	data := filepath.Join(tmp, "data")
	admin := "dspool" + short
	defer host.NewAccount(admin)() // after up's stop
	up, err := host.StartUp(ctx, bin, tmp, []string{"--data", data, "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--heartbeat", "200ms", "--nodes", "0", "--admin", admin, "--uid-base", strconv.Itoa(host.FreeUIDBase(62000))},
		func(*api.Client) bool { return true })
	if err != nil {
		return nil, "", err
	}
	defer up.Stop()
	cl := up.Client
	spec, err := eng.settings(bin, data+"-share", tmp)
	if err != nil {
		return nil, "", err
	}
	pool := &dspool.Pool{Name: "hpc", Provider: spec, Work: []dspool.Work{dspool.WorkBatch},
		Node:      dspool.NodeSize{CPUs: 1000, Memory: 256 << 20},
		Autoscale: &dspool.Autoscale{Max: 4, IdleTimeout: dspool.Duration(2 * time.Second)}}
	if _, err := cl.ApplyPools(ctx, []*dspool.Pool{pool}); err != nil {
		return nil, "", err
	}
	mctx, stopMachines := context.WithCancel(ctx)
	defer stopMachines()
	eng.start(mctx, bin, tmp)
	calls := eng.calls

	// 1. Cold starts: the pool at zero, a job -> running.
	var toGrow []float64
	for i := range n.ColdStarts {
		if err := host.Poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
			ns, err := cl.Nodes(ctx, pool.Name)
			return err == nil && len(ns) == 0, err
		}); err != nil {
			return nil, "", fmt.Errorf("cold start %d: the pool did not return to zero nodes: %w", i+1, err)
		}
		// Past the last removal, and the list after it.
		time.Sleep(3 * time.Second)
		before := len(calls())
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
		if eng.machineStart != nil {
			if at := eng.machineStart(j.SubmittedAt); !at.IsZero() {
				r.AboveStartS = append(r.AboveStartS, j.StartedAt.Sub(at).Seconds())
			}
		}
		for _, c := range calls()[before:] {
			if c.cmd == eng.grow {
				toGrow = append(toGrow, float64(c.at.Sub(j.SubmittedAt).Microseconds())/1000)
				break
			}
		}
		host.Logf("cold start %d: %.3f s", i+1, s)
	}
	r.ColdStartP50 = p50(r.ColdStartS)
	r.AboveStartP50 = p50(r.AboveStartS)

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
	r.ChurnPerMin = perMinute(eng.kinds, calls(), from, to)

	// Decision -> removal: each scale_in event to the next removing call.
	evs, err := cl.PoolEvents(ctx, pool.Name, time.Hour, 1000)
	if err != nil {
		return nil, "", err
	}
	all := calls()
	var toRemove []float64
	for _, e := range evs {
		switch e.Kind {
		case dspool.EventScaleOut:
			if !e.At.Before(from) && e.At.Before(to) {
				r.ChurnNodes += len(e.Nodes)
			}
		case dspool.EventScaleIn:
			for _, c := range all {
				if c.cmd == eng.remove && !c.at.Before(e.At.Add(-50*time.Millisecond)) {
					toRemove = append(toRemove, float64(c.at.Sub(e.At).Microseconds())/1000)
					break
				}
			}
		}
	}
	r.GrowP50Ms, r.RemoveP50Ms = p50(toGrow), p50(toRemove)

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
	r.QuietPerMin = perMinute(eng.kinds, calls(), qfrom, time.Now())
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
	fmt.Printf("providers: %s, load %.2f before\n", r.Engine, r.Load1)
	fmt.Printf("  job submitted to an empty pool -> running: p50 %.2f s (%d runs: %v)\n", r.ColdStartP50, len(r.ColdStartS), r.ColdStartS)
	if len(r.AboveStartS) > 0 {
		fmt.Printf("  the machine started (pod Running) -> the job running: p50 %.2f s (%v)\n", r.AboveStartP50, r.AboveStartS)
	}
	fmt.Printf("  decision -> API call: submit -> the call that grows p50 %.0f ms; scale-in decision -> the call that removes p50 %.0f ms\n", r.GrowP50Ms, r.RemoveP50Ms)
	line := func(what string, m map[string]float64) {
		var parts []string
		total := 0.0
		for _, k := range r.Kinds {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, m[k]))
			total += m[k]
		}
		fmt.Printf("  %s: %.1f calls/min (%s)\n", what, total, strings.Join(parts, ", "))
	}
	line(fmt.Sprintf("churn (%d jobs, %d nodes added, %s)", r.ChurnJobs, r.ChurnNodes, r.Sizes.Churn), r.ChurnPerMin)
	line(fmt.Sprintf("quiet (1 idle node, %s; the loop passes 60 times a minute)", r.Sizes.Quiet), r.QuietPerMin)
}
