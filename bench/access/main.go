// Command access measures what dspool's access control costs with the real
// binary under `dspool up`: authorizing an API request by token (a login's,
// a read-only one's, a revoked one's refusal), how soon a revoked token is
// refused, and what secrets add to a job's start. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspoolaccess" // the admin `dspool up` creates; the jobs run as it
	// uidOffset keeps this benchmark's uids apart from the other
	// benchmarks' (bench/autoscale's cold start uses +50).
	uidOffset = 100
	// listPath is the request whose authorization is measured: the
	// smallest page of the caller's jobs.
	listPath = "/api/v1/jobs?limit=1"
)

// Sizes are how much each measurement does.
type Sizes struct {
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s"` // each throughput cell
	Concurrency []int         `json:"concurrency"`
	Revocations int           `json:"revocations"`
	StartRuns   int           `json:"start_runs"` // per kind of job
}

// Result is everything a run measured.
type Result struct {
	Sizes       Sizes       `json:"sizes"`
	CPUs        int         `json:"cpus"`
	Version     string      `json:"version,omitempty"`
	Cells       []*Cell     `json:"cells"`
	Revocation  *Revocation `json:"revocation"`
	Starts      []*Starts   `json:"job_starts"`
	Load1Before float64     `json:"load1_before"`
	Load1After  float64     `json:"load1_after"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	dur := flag.Duration("duration", 0, "each throughput cell (default 3s; 500ms with -short)")
	runs := flag.Int("runs", 0, "job starts per kind (default 20; 3 with -short)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and its log up.log)")
	flag.Parse()
	n := Sizes{Duration: 3 * time.Second, Concurrency: []int{1, 8}, Revocations: 5, StartRuns: 20}
	if *short {
		n.Duration, n.StartRuns = 500*time.Millisecond, 3
	}
	if *dur > 0 {
		n.Duration = *dur
	}
	if *runs > 0 {
		n.StartRuns = *runs
	}
	n.DurationS = n.Duration.Seconds()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut string, keep bool) error {
	r := &Result{Sizes: n, CPUs: runtime.NumCPU(), Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-access-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	if err := measure(ctx, r, pr.Bin, pr.Dir); err != nil {
		return err
	}
	r.Load1After = host.Load1()
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// measure starts `dspool up` and runs every measurement against it.
func measure(ctx context.Context, r *Result, bin, dir string) error {
	// The jobs run as the admin `up` creates; as root its agent creates
	// that account, which is removed once `up` has stopped (deferred
	// before its stop, so run after it), if it is new.
	defer host.NewAccount(benchAdmin)()
	up, err := startUp(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer up.Stop()
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: %w (dspool's log: %s; keep it with -keep)", what, err, up.Log)
	}
	// Secrets first: the job list the tokens then read holds a job.
	if r.Starts, err = benchStarts(ctx, up, r.Sizes.StartRuns); err != nil {
		return fail("job starts", err)
	}
	if r.Revocation, r.Cells, err = benchTokens(ctx, up, r.Sizes); err != nil {
		return fail("tokens", err)
	}
	return nil
}

// startUp starts `dspool up` with one local node and waits for the node.
func startUp(ctx context.Context, bin, dir string) (*host.Up, error) {
	t0 := time.Now()
	u, err := host.StartUp(ctx, bin, dir, []string{"--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--nodes", "1", "--admin", benchAdmin, "--uid-base", strconv.Itoa(host.UIDBase() + uidOffset)}, func(cl *api.Client) bool {
		ns, err := cl.Nodes(ctx, "")
		return err == nil && slices.ContainsFunc(ns, func(n *dspool.Node) bool { return n.State == dspool.NodeReady })
	})
	if err != nil {
		return nil, err
	}
	host.Logf("dspool up at %s with a ready node, in %.1fs", u.Client.Server, time.Since(t0).Seconds())
	return u, nil
}

// Dist is a set of samples in ms with nearest-rank percentiles.
type Dist struct {
	Samples []float64 `json:"samples_ms"`
	P50     float64   `json:"p50_ms"`
	P90     float64   `json:"p90_ms"`
	Min     float64   `json:"min_ms"`
	Max     float64   `json:"max_ms"`
}

func newDist(samples []float64) *Dist {
	s := slices.Sorted(slices.Values(samples))
	return &Dist{Samples: samples, P50: host.Pct(s, 50), P90: host.Pct(s, 90), Min: s[0], Max: s[len(s)-1]}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
