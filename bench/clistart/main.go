// Command clistart measures what a `dspool` command costs the machine
// before and while it does its work: the CPU time (user + system, from the
// kernel's accounting of the child), page faults and resident memory of
// `dspool version`, of `dspool job submit --help` (the command tree, no
// network) and of `dspool job submit` against a running `dspool up`,
// beside a Go hello world built here and measured in the same run. See
// bench/README.md.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspoolcli"
	holdPool   = "hold" // static pool without machines: its jobs never start
	// uidOffset keeps this benchmark's uids apart from the other
	// benchmarks'.
	uidOffset = 550
)

// Result is everything measured.
type Result struct {
	Runs       int   `json:"runs"`
	Hello      Cost  `json:"hello"`       // a Go hello world, static
	Version    Cost  `json:"version"`     // dspool version
	SubmitHelp Cost  `json:"submit_help"` // dspool job submit --help
	Submit     *Cost `json:"submit"`      // dspool job submit, one after another
	// The same of the binary -baseline names, measured in turn with
	// this one's.
	BaseVersion    *Cost   `json:"baseline_version,omitempty"`
	BaseSubmitHelp *Cost   `json:"baseline_submit_help,omitempty"`
	BaseSubmit     *Cost   `json:"baseline_submit,omitempty"`
	ServerMs       float64 `json:"server_cpu_ms_per_submit"`
	// Parallel are the rounds of submissions 8 at a time, beside sbatch's.
	Parallel   []Round `json:"parallel,omitempty"`
	Load1      float64 `json:"load1_before"`
	Load1After float64 `json:"load1_after"`
}

// Cost is what one process cost, over the runs: CPU (user + system) in
// ms, its median and 10th and 90th percentiles; minor page faults and
// maximum resident set (KiB), medians.
type Cost struct {
	CPUP50Ms float64 `json:"cpu_p50_ms"`
	CPUP10Ms float64 `json:"cpu_p10_ms"`
	CPUP90Ms float64 `json:"cpu_p90_ms"`
	UserMs   float64 `json:"user_p50_ms"`
	SysMs    float64 `json:"sys_p50_ms"`
	Faults   float64 `json:"minor_faults_p50"`
	RSSKiB   float64 `json:"max_rss_kib_p50"`
	WallMs   float64 `json:"wall_p50_ms"`
}

func main() {
	short := flag.Bool("short", false, "few runs: a quick check that everything works")
	runs := flag.Int("runs", 300, "runs of each command")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	baseline := flag.String("baseline", "", "another dspool binary (e.g. of an earlier commit) to measure in turn with it")
	noUp := flag.Bool("no-up", false, "skip `dspool job submit` (it starts `dspool up`)")
	rounds := flag.Int("rounds", 3, "rounds of submissions 8 at a time")
	perRound := flag.Int("parallel", 200, "submissions of each round")
	noPeer := flag.Bool("no-peer", false, "no sbatch beside the rounds (the Slurm peer)")
	peer := flag.String("peer", "bench/peers/slurm.sh", "the Slurm peer's script")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	if *short {
		*runs, *rounds, *perRound = 20, 1, 40
	}
	if *noPeer {
		*peer = ""
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *runs, *bin, *baseline, *jsonOut, *noUp, *keep, parallelSizes{*rounds, *perRound, *peer}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parallelSizes are the rounds of submissions 8 at a time, and the Slurm
// peer's script ("" for none).
type parallelSizes struct {
	rounds, n int
	peer      string
}

func run(ctx context.Context, runs int, bin, baseline, jsonOut string, noUp, keep bool, par parallelSizes) error {
	pr, err := host.Prepare(ctx, "dspool-bench-cli-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	hello, err := buildHello(ctx, pr.Dir)
	if err != nil {
		return err
	}
	r := &Result{Runs: runs, Load1: host.Load1()}
	host.Logf("%s: hello world, version and job submit --help, %d runs each, in turn", pr.Version, runs)
	type cmd struct {
		name string
		args []string
		xs   []sample
	}
	cmds := []*cmd{{name: hello}, {name: pr.Bin, args: []string{"version"}}, {name: pr.Bin, args: []string{"job", "submit", "--help"}}}
	if baseline != "" {
		cmds = append(cmds, &cmd{name: baseline, args: []string{"version"}}, &cmd{name: baseline, args: []string{"job", "submit", "--help"}})
	}
	for range runs {
		for _, c := range cmds {
			x, err := measure(ctx, nil, c.name, c.args...)
			if err != nil {
				return err
			}
			c.xs = append(c.xs, x)
		}
	}
	r.Hello, r.Version, r.SubmitHelp = summarize(cmds[0].xs), summarize(cmds[1].xs), summarize(cmds[2].xs)
	if baseline != "" {
		v, s := summarize(cmds[3].xs), summarize(cmds[4].xs)
		r.BaseVersion, r.BaseSubmitHelp = &v, &s
	}
	if !noUp {
		if err := benchSubmit(ctx, pr, baseline, runs, par, r); err != nil {
			return err
		}
	}
	r.Load1After = host.Load1()
	report(r)
	return host.WriteJSON(jsonOut, r)
}

// benchSubmit starts `dspool up` with a pool whose jobs never start and
// submits runs jobs to it with the CLI, one after another: the CLI's cost
// and what the control plane spent per submission; then rounds of
// submissions 8 at a time, beside sbatch's.
func benchSubmit(ctx context.Context, pr *host.Prepared, baseline string, runs int, par parallelSizes, r *Result) error {
	defer host.NewAccount(benchAdmin)()
	up, err := host.StartUp(ctx, pr.Bin, pr.Dir, []string{"--data", filepath.Join(pr.Dir, "data"), "--listen", "127.0.0.1:0",
		"--ssh-listen", "off", "--nodes", "0", "--admin", benchAdmin, "--uid-base", strconv.Itoa(host.UIDBase() + uidOffset)},
		func(cl *api.Client) bool {
			_, err := cl.ApplyPools(ctx, []*dspool.Pool{{Name: holdPool, Provider: dspool.Provider(dspool.ProviderStatic),
				Node: dspool.NodeSize{CPUs: 2000, Memory: 2 << 30}, Work: []dspool.Work{dspool.WorkBatch}}})
			return err == nil
		})
	if err != nil {
		return err
	}
	defer up.Stop()
	env := []string{"DSPOOL_CONFIG=" + up.Config}
	args := []string{"job", "submit", "--pool", holdPool, "--cpus", "1", "--", "true"}
	// One first, outside the figures: the server's first TLS handshake
	// and the store's first writes.
	if _, err := measure(ctx, env, pr.Bin, args...); err != nil {
		return err
	}
	host.Logf("job submit: %d runs against %s", runs, up.Client.Server)
	bins := []string{pr.Bin}
	if baseline != "" {
		bins = append(bins, baseline)
	}
	xs := make([][]sample, len(bins))
	server0 := cpuOf(up.PID())
	for range runs {
		for i, bin := range bins {
			x, err := measure(ctx, env, bin, args...)
			if err != nil {
				return err
			}
			xs[i] = append(xs[i], x)
		}
	}
	r.ServerMs = ms(cpuOf(up.PID())-server0) / float64(runs*len(bins))
	c := summarize(xs[0])
	r.Submit = &c
	if baseline != "" {
		b := summarize(xs[1])
		r.BaseSubmit = &b
	}
	if par.rounds == 0 {
		return nil
	}
	var slurmConf string
	if par.peer != "" {
		conf, down, err := startSlurm(ctx, par.peer, filepath.Join(pr.Dir, "slurm"))
		if err != nil {
			return fmt.Errorf("the Slurm peer: %w", err)
		}
		defer down()
		slurmConf = conf
	}
	host.Logf("8 at a time: %d rounds of %d submissions", par.rounds, par.n)
	r.Parallel, err = benchParallel(ctx, bins, env, slurmConf, par.n, par.rounds)
	return err
}

// sample is one process's cost.
type sample struct {
	user, sys, wall time.Duration
	faults, rss     int64
}

// measure runs name with args and returns what the kernel accounted to
// it (wait4's rusage: the child alone).
func measure(ctx context.Context, env []string, name string, args ...string) (sample, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(t0)
	if err != nil {
		return sample{}, fmt.Errorf("%s %v: %v: %s", name, args, err, host.Tail(out, 3))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return sample{
		user: time.Duration(ru.Utime.Nano()), sys: time.Duration(ru.Stime.Nano()), wall: wall,
		faults: ru.Minflt, rss: ru.Maxrss,
	}, nil
}

func summarize(xs []sample) Cost {
	pick := func(f func(sample) float64) []float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v
	}
	cpu := pick(func(x sample) float64 { return ms(x.user + x.sys) })
	return Cost{
		CPUP50Ms: host.Pct(cpu, 50), CPUP10Ms: host.Pct(cpu, 10), CPUP90Ms: host.Pct(cpu, 90),
		UserMs: host.Pct(pick(func(x sample) float64 { return ms(x.user) }), 50),
		SysMs:  host.Pct(pick(func(x sample) float64 { return ms(x.sys) }), 50),
		Faults: host.Pct(pick(func(x sample) float64 { return float64(x.faults) }), 50),
		RSSKiB: host.Pct(pick(func(x sample) float64 { return float64(x.rss) }), 50),
		WallMs: host.Pct(pick(func(x sample) float64 { return ms(x.wall) }), 50),
	}
}

// buildHello builds a Go hello world into dir as dspool is built
// (statically), the floor a Go command costs.
func buildHello(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build a hello world: %v: %s", err, host.Tail(out, 5))
	}
	return bin, nil
}

// cpuOf is the CPU time (user + system) process pid has used so far.
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's name, which ends at the last ')':
	// utime and stime are the 12th and 13th of them, in clock ticks.
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	var f [13]int64
	var state string
	if _, err := fmt.Sscan(string(rest), &state, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10], &f[11]); err != nil {
		return 0
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(f[10]+f[11]) * tick
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
