// Command batch measures dspool's batch path (submissions/s, makespan,
// submit->start latency) on 4 local nodes x 2 cpus, and the Slurm peer
// (bench/peers/slurm.sh) with the same sizes. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/internal/pgtest"
)

const (
	benchAdmin = "dspoolbatch" // the admin `up` creates; the jobs run as it
	benchPool  = "bench"       // local provider: 4 agent processes x 2 cpus
	holdPool   = "hold"        // static pool without machines: its jobs never start
	nodes      = 4
	clients    = 16 // API submitters
	procs      = 8  // CLI submit processes at a time, and makespan submitters (the peer's PARALLEL)
)

// Sizes are how many jobs each measurement uses.
type Sizes struct {
	API      int `json:"api"`
	CLI      int `json:"cli"`
	Makespan int `json:"makespan"`
	Latency  int `json:"latency"`
	Array    int `json:"array"`     // tasks of the array run to the end
	Chain    int `json:"chain"`     // jobs in a chain of dependencies
	BigArray int `json:"big_array"` // tasks of the array only submitted
	Preempt  int `json:"preempt"`   // evictions of each kind of victim
}

// Result is what was measured on dspool.
type Result struct {
	APISubmitPerS   float64 `json:"api_submit_per_s"`
	APICancelPerS   float64 `json:"api_cancel_per_s"`
	CLISubmitPerS   float64 `json:"cli_submit_per_s"`
	MakespanS       float64 `json:"makespan_s"`        // first submit -> last finished_at
	MakespanSubmitS float64 `json:"makespan_submit_s"` // first submit -> last submit acknowledged
	MakespanDrainS  float64 `json:"makespan_drain_s"`  // first submit -> the client has seen all finished
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP90Ms    float64 `json:"latency_p90_ms"`
	LatencyMinMs    float64 `json:"latency_min_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
	ArrayS          float64 `json:"array_s"`            // array submitted -> its last task's end
	ArraySubmitMs   float64 `json:"array_submit_ms"`    // the array's submission
	ChainS          float64 `json:"chain_s"`            // the chain's first start -> its last end
	BigArraySubmitS float64 `json:"big_array_submit_s"` // the big array's submission
	BigArrayRSSMiB  float64 `json:"big_array_rss_mib"`  // what the control plane's resident memory grew by
	BigArrayCancelS float64 `json:"big_array_cancel_s"` // cancelling it, one call
	// Preemption: from a victim's SIGTERM to the start of the job of a
	// higher priority it made room for, for a victim that checkpoints in
	// a second and one that waits for SIGKILL at the grace.
	PreemptGraceS   float64 `json:"preempt_grace_s"`
	PreemptCkptP50S float64 `json:"preempt_checkpoint_p50_s"`
	PreemptCkptMaxS float64 `json:"preempt_checkpoint_max_s"`
	PreemptKillP50S float64 `json:"preempt_kill_p50_s"`
	PreemptKillMaxS float64 `json:"preempt_kill_max_s"`
	Load1Before     float64 `json:"load1_before"`
	Load1After      float64 `json:"load1_after"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	noPeer := flag.Bool("no-peer", false, "do not run the Slurm peer")
	peer := flag.String("peer", "bench/peers/slurm.sh", "the Slurm peer's script")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and log)")
	pg := flag.Bool("postgres", false, "also measure submissions, makespan and latency with dspool's store on PostgreSQL (a throwaway cluster of Debian's, fsync on), beside SQLite")
	flag.Parse()
	n := Sizes{API: 10000, CLI: 200, Makespan: 1000, Latency: 50, Array: 1000, Chain: 100, BigArray: 100000, Preempt: 5}
	if *short {
		n = Sizes{API: 500, CLI: 40, Makespan: 100, Latency: 10, Array: 100, Chain: 10, BigArray: 10000, Preempt: 1}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *jsonOut, *peer, *noPeer, *keep, *pg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut, peer string, noPeer, keep, pg bool) error {
	load := host.Load1()
	tmp, done, err := host.TempDir("dspool-bench-", keep)
	if err != nil {
		return err
	}
	defer done()
	if bin == "" {
		if bin, err = host.BuildDspool(ctx, tmp); err != nil {
			return err
		}
	}
	res, err := benchDspool(ctx, bin, tmp, n, "")
	if err != nil {
		return fmt.Errorf("dspool: %w (its log: %s; keep it with -keep)", err, filepath.Join(tmp, "up.log"))
	}
	res.Load1Before = load
	if pg {
		dir := filepath.Join(tmp, "postgres")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		c, err := pgtest.Start(true)
		if err != nil {
			return err
		}
		defer c.Stop()
		where, err := pgtest.NewDatabaseURL(c.URL)
		if err != nil {
			return err
		}
		host.Logf("the same on a PostgreSQL store")
		on, err := benchDspool(ctx, bin, dir, n, where)
		if err != nil {
			return fmt.Errorf("dspool on PostgreSQL: %w (its log: %s; keep it with -keep)", err, filepath.Join(dir, "up.log"))
		}
		defer reportStores(os.Stdout, res, on)
	}

	var slurm map[string]any
	peerNote := "skipped (-no-peer)"
	if !noPeer {
		peerNote = ""
		if slurm, err = runPeer(ctx, peer, filepath.Join(tmp, "slurm"), n); err != nil {
			peerNote = "failed: " + err.Error()
		}
	}
	return report(os.Stdout, jsonOut, n, res, slurm, peerNote)
}

// benchDspool starts `dspool up` with the two pools and runs every
// measurement; with store (a PostgreSQL URL) it runs on that store, and
// only the submissions, the makespan and the latency.
func benchDspool(ctx context.Context, bin, dir string, n Sizes, store string) (*Result, error) {
	r := &Result{}
	// The jobs run as the admin `up` creates; as root its agents create
	// that account, which is removed once they have stopped, if it is new.
	defer host.NewAccount(benchAdmin)()
	up, err := startUp(ctx, bin, dir, store)
	if err != nil {
		return nil, err
	}
	defer up.stop()
	cl := up.cl

	// a. API submissions into a pool that cannot start them; cancelled after
	// so that the scheduler does not carry them through the later phases.
	host.Logf("API: %d submissions, %d clients", n.API, clients)
	ids := make([]int64, n.API)
	if r.APISubmitPerS, err = parallel(ctx, n.API, clients, func(i int) error { return submit(ctx, cl, holdPool, &ids[i]) }); err != nil {
		return nil, fmt.Errorf("API submit: %w", err)
	}
	if r.APICancelPerS, err = parallel(ctx, n.API, clients, func(i int) error { _, err := cl.CancelJob(ctx, ids[i]); return err }); err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	host.Logf("API: %.0f submissions/s, %.0f cancels/s", r.APISubmitPerS, r.APICancelPerS)

	// b. CLI: one `dspool job submit` process per job; the jobs run on the
	// bench pool meanwhile, as the peer's do.
	host.Logf("CLI: %d `dspool job submit` processes, %d at a time", n.CLI, procs)
	r.CLISubmitPerS, err = parallel(ctx, n.CLI, procs, func(int) error {
		cmd := exec.CommandContext(ctx, bin, "job", "submit", "--pool", benchPool, "--cpus", "1", "--", "true")
		cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+up.config)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("CLI submit: %w", err)
	}
	host.Logf("CLI: %.1f submissions/s; draining", r.CLISubmitPerS)
	if err := waitIdle(ctx, cl); err != nil {
		return nil, err
	}

	// c. Makespan: from the first submission to the last job's finished_at.
	host.Logf("makespan: %d jobs, %d submitters", n.Makespan, procs)
	t0, ids := time.Now(), make([]int64, n.Makespan)
	if _, err = parallel(ctx, n.Makespan, procs, func(i int) error { return submit(ctx, cl, benchPool, &ids[i]) }); err != nil {
		return nil, fmt.Errorf("makespan submit: %w", err)
	}
	r.MakespanSubmitS = time.Since(t0).Seconds()
	// Long-poll each job (no table scans meanwhile, unlike polling the list).
	finished := make([]time.Time, n.Makespan)
	if _, err = parallel(ctx, n.Makespan, procs, func(i int) error {
		j, err := wait(ctx, cl, ids[i])
		if err == nil {
			finished[i] = *j.FinishedAt
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("makespan: %w", err)
	}
	r.MakespanDrainS = time.Since(t0).Seconds()
	last := slices.MaxFunc(finished, time.Time.Compare)
	r.MakespanS = last.Sub(t0).Seconds()
	host.Logf("makespan: %.2fs (submitted in %.2fs, all seen finished at %.2fs)", r.MakespanS, r.MakespanSubmitS, r.MakespanDrainS)

	// d. Latency on an idle pool: started_at (the agent's clock, this
	// machine's) minus the time just before the submit call; each job
	// finishes before the next is submitted.
	host.Logf("latency: %d sequential jobs", n.Latency)
	var lat []float64
	for range n.Latency {
		t0 := time.Now()
		j, err := cl.SubmitJob(ctx, spec(benchPool), 0)
		if err == nil {
			j, err = wait(ctx, cl, j.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		lat = append(lat, float64(j.StartedAt.Sub(t0).Microseconds())/1000)
	}
	slices.Sort(lat)
	// Nearest-rank percentiles, as the peer computes them: ceil(n*p/100)-th.
	r.LatencyP50Ms, r.LatencyP90Ms = lat[(len(lat)+1)/2-1], lat[(9*len(lat)+9)/10-1]
	r.LatencyMinMs, r.LatencyMaxMs = lat[0], lat[len(lat)-1]
	host.Logf("latency: min %.1f p50 %.1f p90 %.1f max %.1f ms", r.LatencyMinMs, r.LatencyP50Ms, r.LatencyP90Ms, r.LatencyMaxMs)
	if store != "" {
		return r, nil
	}
	if err := benchArrays(ctx, up, n, r); err != nil {
		return nil, err
	}
	if err := benchPreemption(ctx, up, filepath.Join(dir, "data-share"), n.Preempt, r); err != nil {
		return nil, err
	}
	r.Load1After = host.Load1()
	return r, nil
}

// upProc is a running `dspool up` and a client logged in to it.
type upProc struct {
	cmd    *exec.Cmd
	config string // DSPOOL_CONFIG: the CLI login
	cl     *api.Client
	done   chan struct{}
}

func startUp(ctx context.Context, bin, dir, store string) (*upProc, error) {
	log, err := os.Create(filepath.Join(dir, "up.log"))
	if err != nil {
		return nil, err
	}
	u := &upProc{config: filepath.Join(dir, "config.json"), done: make(chan struct{})}
	u.cmd = exec.Command(bin, "up", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--heartbeat", "200ms", "--nodes", "0", "--admin", benchAdmin, "--uid-base", strconv.Itoa(host.UIDBase()))
	if store != "" {
		u.cmd.Args = append(u.cmd.Args, "--store", store)
	}
	u.cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.config)
	u.cmd.Stdout, u.cmd.Stderr = log, log
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = u.cmd.Wait(); close(u.done) }()

	// `dspool up` writes the login once it listens; then apply the pools and
	// wait for the bench pool's agents.
	size, batch := dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, []dspool.Work{dspool.WorkBatch}
	pools := []*dspool.Pool{
		{Name: benchPool, Provider: dspool.Provider(dspool.ProviderLocal), Node: size, Count: nodes, Work: batch},
		{Name: holdPool, Provider: dspool.Provider(dspool.ProviderStatic), Node: size, Count: 0, Work: batch},
		{Name: preemptPool, Provider: dspool.Provider(dspool.ProviderLocal), Node: size, Count: 1, Work: batch,
			Preemption: &dspool.Preemption{Grace: dspool.Duration(preemptGrace)}},
	}
	t0, applied := time.Now(), false
	err = host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-u.done:
			return false, errors.New("`dspool up` exited")
		default:
		}
		cl, ok := host.LoginClient(u.config)
		if !ok {
			return false, nil
		}
		u.cl = cl
		if !applied {
			_, err := u.cl.ApplyPools(ctx, pools)
			applied = err == nil
			return false, err
		}
		ns, err := u.cl.Nodes(ctx, benchPool)
		ready := 0
		for _, n := range ns {
			if n.State == dspool.NodeReady {
				ready++
			}
		}
		return ready == nodes, err
	})
	if err != nil {
		u.stop()
		return nil, fmt.Errorf("start: %w", err)
	}
	host.Logf("dspool up at %s with %d ready nodes in %.1fs", u.cl.Server, nodes, time.Since(t0).Seconds())
	return u, nil
}

// stop sends the Ctrl-C that `dspool up` expects; it kills it after 45s.
func (u *upProc) stop() {
	_ = u.cmd.Process.Signal(os.Interrupt)
	select {
	case <-u.done:
	case <-time.After(45 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
	}
}

func spec(pool string) *dspool.JobSpec {
	return &dspool.JobSpec{Pool: pool, CPUs: 1000, Command: []string{"true"}}
}

// submit submits a job `true` to pool and sets *id.
func submit(ctx context.Context, cl *api.Client, pool string, id *int64) error {
	j, err := cl.SubmitJob(ctx, spec(pool), 0)
	if err == nil {
		*id = j.ID
	}
	return err
}

// wait waits for job id to finish; it must have succeeded.
func wait(ctx context.Context, cl *api.Client, id int64) (*dspool.Job, error) {
	j, err := cl.WaitJob(ctx, id, time.Minute)
	for err == nil && !j.State.Terminal() {
		j, err = cl.WaitJob(ctx, id, time.Minute)
	}
	if err == nil && (j.State != dspool.JobSucceeded || j.StartedAt == nil || j.FinishedAt == nil) {
		err = fmt.Errorf("job %d ended %s (%s): %s", j.ID, j.State, j.Reason, j.Message)
	}
	return j, err
}

// waitIdle polls until no job of the bench pool is queued or running.
func waitIdle(ctx context.Context, cl *api.Client) error {
	return host.Poll(ctx, 30*time.Minute, 50*time.Millisecond, func() (bool, error) {
		l, err := cl.Jobs(ctx, api.JobQuery{States: []string{"queued", "running"}, AllUsers: true, Pool: benchPool, Limit: 1})
		return err == nil && len(l.Jobs) == 0, err
	})
}

// parallel runs f(0..n-1) on workers goroutines; it returns how many f
// completed per second, or the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) (float64, error) {
	t0 := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(t0).Seconds(), context.Cause(ctx)
}
