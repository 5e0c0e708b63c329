// Command restart measures restarts of dspool's control plane with the
// real binary. First, `dspool server` with two agents, a store of 10,000
// queued jobs (and some finished and running) and 100 users' SSH sessions,
// killed (kill -9) or stopped (SIGTERM) and started again on the same
// data: how soon /readyz, a job's detail and the job list answer, the
// sessions are confirmed by their nodes, and a job submitted at once runs.
// Then 1,000 simulated agents (bench/internal/agentsim) reconnecting to a
// control plane killed and started again: how soon all are back, how fast
// they came, and how many were told to come back later. See
// bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/agentsim"
	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspoolrestart" // the admin `dspool server` creates; its jobs run as it
	userPrefix = "dspoolrs"      // the users with sessions: dspoolrs001, ...
	// settle is how long a connection must have lasted for an agent to
	// start its backoff afresh when it breaks (agent.Run): restarts are
	// this far apart, as real ones are.
	settle = 11 * time.Second
)

// Sizes are how much each part does.
type Sizes struct {
	Queued        int `json:"queued_jobs"`
	Done          int `json:"finished_jobs"`
	Running       int `json:"running_jobs"`
	Sessions      int `json:"sessions"`
	Restarts      int `json:"restarts"` // of each kind
	Agents        int `json:"agents"`
	AgentRestarts int `json:"agent_restarts"`
}

// Result is everything a run measured.
type Result struct {
	Sizes      Sizes       `json:"sizes"`
	CPUs       int         `json:"cpus"`
	Version    string      `json:"version,omitempty"`
	StoreMB    float64     `json:"store_mb"` // the first part's store on disk
	Restarts   []Restart   `json:"restarts"`
	Reconnects []Reconnect `json:"reconnects"`
	Load1      []float64   `json:"load1"` // before, between the parts, after
	Date       time.Time   `json:"date"`
}

func main() {
	agentsim.Child()
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	restarts := flag.Int("restarts", -1, "restarts of each kind in the first part (default 5; 1 with -short; 0 skips the part)")
	agents := flag.Int("agents", -1, "simulated agents in the second part (default 1000; 100 with -short; 0 skips it)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (the servers' data and logs, the agents' logs)")
	flag.Parse()
	n := Sizes{Queued: 10000, Done: 200, Running: 20, Sessions: 100, Restarts: 5, Agents: 1000, AgentRestarts: 3}
	if *short {
		n = Sizes{Queued: 1000, Done: 20, Running: 4, Sessions: 10, Restarts: 1, Agents: 100, AgentRestarts: 1}
	}
	if *restarts >= 0 {
		n.Restarts = *restarts
	}
	if *agents >= 0 {
		n.Agents = *agents
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut string, keep bool) error {
	// The fleet's process (and the server) inherit the limit: a socket
	// and a lock per agent there, a socket per agent in the server.
	if err := host.RaiseFileLimit(4*n.Agents + 4096); err != nil {
		return fmt.Errorf("%w (run as root, or pass a smaller -agents)", err)
	}
	r := &Result{Sizes: n, CPUs: runtime.NumCPU(), Date: time.Now().UTC(), Load1: []float64{host.Load1()}}
	pr, err := host.Prepare(ctx, "dspool-bench-restart-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	if n.Restarts > 0 {
		if err := restarts(ctx, r, pr.Bin, pr.Dir); err != nil {
			return err
		}
	}
	r.Load1 = append(r.Load1, host.Load1())
	if n.Agents > 0 && n.AgentRestarts > 0 {
		if r.Reconnects, err = reconnects(ctx, pr.Bin, pr.Dir, n); err != nil {
			return err
		}
	}
	r.Load1 = append(r.Load1, host.Load1())
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// restarts fills the first part's pool and restarts its control plane,
// killed and stopped in turn.
func restarts(ctx context.Context, r *Result, bin, dir string) error {
	n := r.Sizes
	f, err := fill(ctx, bin, dir, n)
	if err != nil {
		return err
	}
	defer f.close()
	for _, suffix := range []string{"", "-wal"} {
		if st, err := os.Stat(filepath.Join(f.p.data, "dspool.db"+suffix)); err == nil {
			r.StoreMB += float64(st.Size()) / (1 << 20)
		}
	}
	ready := f.up
	for i := range 2 * n.Restarts {
		kind := kill9
		if i%2 == 1 {
			kind = sigterm
		}
		if err := sleep(ctx, time.Until(ready.Add(settle))); err != nil {
			return err
		}
		x, err := restart(ctx, f, kind, n.Sessions, i+1)
		if err != nil {
			return fmt.Errorf("%s and start: %w", kind, err)
		}
		host.Logf("%s and start: /readyz after %.3f s, job show %.3f s, sessions confirmed %.3f s, a new job ran %.3f s",
			kind, x.ReadyzS, x.JobShowS, x.SessionsS, x.JobStartS)
		r.Restarts = append(r.Restarts, x)
		ready = time.Now()
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
