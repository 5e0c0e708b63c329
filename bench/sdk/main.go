// Command sdk measures a job submission's round trip through the Python SDK
// against `dspool job submit`, with the real binary under `dspool up`: the
// SDK in one Python process that submits on a kept-alive connection, and a
// CLI process per submission, as a script that loops over `dspool job
// submit` runs. Both submit the same job to a pool with no node (it queues
// and never starts), alternately, and the p50 of each is printed with their
// ratio (target: the SDK at most 0.2 of the CLI). See bench/README.md.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspoolsdk" // the admin `dspool up` creates
	// uidOffset keeps this benchmark's uids apart from the other
	// benchmarks'.
	uidOffset = 200
	// target is the most the SDK's p50 may be of the CLI's.
	target = 0.2
)

// submitter is the Python side: it submits one job per line it reads and
// answers with the round trip in ms, from submit() called to the job
// returned, on the client's kept-alive connection.
const submitter = `
import sys, time, dspool
c = dspool.Client()
for line in sys.stdin:
    t = time.perf_counter()
    j = c.submit(["true"], pool="hold", cpus=0.1)
    print("%.3f %d" % ((time.perf_counter() - t) * 1000, j.id), flush=True)
`

// Result is what a run measured.
type Result struct {
	Runs        int     `json:"runs"`
	CPUs        int     `json:"cpus"`
	Version     string  `json:"version,omitempty"`
	Python      string  `json:"python"`
	SDK         *Dist   `json:"sdk"`
	CLI         *Dist   `json:"cli"`
	Ratio       float64 `json:"ratio_p50"` // SDK p50 / CLI p50
	Target      float64 `json:"target"`
	Load1Before float64 `json:"load1_before"`
	Load1After  float64 `json:"load1_after"`
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

func main() {
	short := flag.Bool("short", false, "a few runs: a quick check that everything works")
	runs := flag.Int("runs", 0, "submissions of each (default 100; 5 with -short)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	python := flag.String("python", "/usr/bin/python3", "the Python that runs the SDK")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and its log up.log)")
	flag.Parse()
	n := 100
	if *short {
		n = 5
	}
	if *runs > 0 {
		n = *runs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, *bin, *python, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, bin, python, jsonOut string, keep bool) error {
	sdk, err := filepath.Abs("python")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(sdk, "dspool", "__init__.py")); err != nil {
		return fmt.Errorf("the SDK is not in ./python: run this from the repository root (%w)", err)
	}
	r := &Result{Runs: n, CPUs: runtime.NumCPU(), Python: python, Target: target, Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-sdk-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	r.Version = pr.Version
	defer host.NewAccount(benchAdmin)()
	up, err := host.StartUp(ctx, pr.Bin, pr.Dir, []string{"--data", filepath.Join(pr.Dir, "data"), "--listen", "127.0.0.1:0",
		"--ssh-listen", "off", "--nodes", "1", "--admin", benchAdmin, "--uid-base", strconv.Itoa(host.FreeUIDBase(61000) + uidOffset)},
		func(cl *api.Client) bool { _, err := cl.WhoAmI(ctx); return err == nil })
	if err != nil {
		return err
	}
	defer up.Stop()
	// A pool with no machine: its jobs queue and never start, so nothing
	// but the submissions loads the control plane.
	if _, err := up.Client.ApplyPools(ctx, []*dspool.Pool{{Name: "hold", Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}}); err != nil {
		return fmt.Errorf("apply the pool hold: %w", err)
	}
	if r.SDK, r.CLI, err = measure(ctx, n, up, python, sdk); err != nil {
		return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
	}
	r.Ratio = r.SDK.P50 / r.CLI.P50
	r.Load1After = host.Load1()
	report(os.Stdout, r)
	return host.WriteJSON(jsonOut, r)
}

// measure submits n jobs with each, alternately, after one of each that is
// not counted (the SDK's first opens its connection; the CLI's first
// loads the binary from disk).
func measure(ctx context.Context, n int, up *host.Up, python, sdk string) (*Dist, *Dist, error) {
	cmd := exec.CommandContext(ctx, python, "-c", submitter)
	cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+up.Config, "PYTHONPATH="+sdk, "PYTHONDONTWRITEBYTECODE=1")
	for _, k := range []string{"DSPOOL_SERVER", "DSPOOL_TOKEN", "DSPOOL_CA"} {
		cmd.Env = append(cmd.Env, k+"=")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", python, err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	answers := bufio.NewScanner(stdout)
	viaSDK := func() (float64, error) {
		if _, err := io.WriteString(stdin, "submit\n"); err != nil {
			return 0, err
		}
		if !answers.Scan() {
			return 0, fmt.Errorf("the SDK's submitter stopped: %s", host.Tail([]byte(stderr.String()), 5))
		}
		var ms float64
		var id int64
		if _, err := fmt.Sscanf(answers.Text(), "%f %d", &ms, &id); err != nil || id <= 0 {
			return 0, fmt.Errorf("the SDK's submitter answered %q", answers.Text())
		}
		return ms, nil
	}
	viaCLI := func() (float64, error) {
		t := time.Now()
		out, err := up.Output(ctx, nil, "job", "submit", "--pool", "hold", "--cpus", "0.1", "-o", "json", "--", "true")
		ms := float64(time.Since(t).Microseconds()) / 1000
		var j dspool.Job
		if err == nil && (json.Unmarshal(out, &j) != nil || j.ID <= 0) {
			err = errors.New("dspool job submit printed no job")
		}
		return ms, err
	}
	var sdkMs, cliMs []float64
	for i := -1; i < n; i++ {
		s, err := viaSDK()
		if err != nil {
			return nil, nil, err
		}
		c, err := viaCLI()
		if err != nil {
			return nil, nil, err
		}
		if i >= 0 {
			sdkMs, cliMs = append(sdkMs, s), append(cliMs, c)
		}
	}
	return newDist(sdkMs), newDist(cliMs), nil
}

func report(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\ndspool Python SDK, %d cpus, load1 %.2f before and %.2f after", r.CPUs, r.Load1Before, r.Load1After)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, "\n\nJob submission round trip, %d of each, alternately (a queued job in a pool with no node)\n\n", r.Runs)
	fmt.Fprintf(w, "%-44s %8s %8s %8s %8s\n", "CLIENT", "P50 MS", "P90 MS", "MIN MS", "MAX MS")
	for _, row := range []struct {
		name string
		d    *Dist
	}{{"SDK: Client().submit() (" + filepath.Base(r.Python) + ")", r.SDK}, {"CLI: dspool job submit (a process each)", r.CLI}} {
		fmt.Fprintf(w, "%-44s %8.2f %8.2f %8.2f %8.2f\n", row.name, row.d.P50, row.d.P90, row.d.Min, row.d.Max)
	}
	verdict := "met"
	if r.Ratio > r.Target {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "\nSDK p50 / CLI p50 = %.3f (target <= %.1f: %s)\n", r.Ratio, r.Target, verdict)
}
