package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// procs is how many submitting processes run at a time, as in bench/batch.
const procs = 8

// Round is one round of submissions procs at a time: dspool's (and the
// baseline's) of jobs to a pool without machines, and sbatch's of held
// jobs (-H), so that no job runs on either side.
type Round struct {
	Load1      float64  `json:"load1"`
	PerS       float64  `json:"dspool_per_s"`
	BasePerS   *float64 `json:"baseline_per_s,omitempty"`
	SbatchPerS *float64 `json:"sbatch_per_s,omitempty"`
}

// benchParallel runs rounds of n submissions, procs at a time, with each
// binary in bins and then with sbatch when slurmConf names a running
// Slurm's configuration, each round in turn, so that the load falls on
// all alike.
func benchParallel(ctx context.Context, bins []string, env []string, slurmConf string, n, rounds int) ([]Round, error) {
	args := []string{"job", "submit", "--pool", holdPool, "--cpus", "1", "--", "true"}
	var out []Round
	for range rounds {
		rd := Round{Load1: host.Load1()}
		for i, bin := range bins {
			rate, err := parallel(ctx, n, env, bin, args...)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				rd.PerS = rate
			} else {
				rd.BasePerS = &rate
			}
		}
		if slurmConf != "" {
			rate, err := parallel(ctx, n, []string{"SLURM_CONF=" + slurmConf}, "sbatch", "-H", "--parsable", "-o", "/dev/null", "-e", "/dev/null", "--wrap", "true")
			if err != nil {
				return nil, err
			}
			rd.SbatchPerS = &rate
		}
		host.Logf("8 at a time: %s", rd)
		out = append(out, rd)
	}
	return out, nil
}

func (r Round) String() string {
	s := fmt.Sprintf("load1 %.2f, dspool %.1f/s", r.Load1, r.PerS)
	if r.BasePerS != nil {
		s += fmt.Sprintf(", baseline %.1f/s", *r.BasePerS)
	}
	if r.SbatchPerS != nil {
		s += fmt.Sprintf(", sbatch %.1f/s", *r.SbatchPerS)
	}
	return s
}

// parallel runs the command n times, procs at a time, and returns n over
// the wall time.
func parallel(ctx context.Context, n int, env []string, name string, args ...string) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	t0 := time.Now()
	for range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				cmd := exec.CommandContext(ctx, name, args...)
				cmd.Env = append(os.Environ(), env...)
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("%s %v: %v: %s", name, args, err, host.Tail(out, 3))
					return
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(n) / time.Since(t0).Seconds()
	close(errs)
	return rate, <-errs
}

// startSlurm brings the Slurm peer up in dir on its own port and returns
// its configuration and what takes it down.
func startSlurm(ctx context.Context, script, dir string) (conf string, down func(), err error) {
	peer := func(ctx context.Context, verb string) error {
		cmd := exec.CommandContext(ctx, "bash", script, verb)
		cmd.Env = append(os.Environ(), "SLURM_BENCH_DIR="+dir, "SLURM_BENCH_PORT=16917")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", script, verb, err, host.Tail(out, 3))
		}
		return nil
	}
	host.Logf("slurm: %s up", script)
	if err := peer(ctx, "up"); err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "slurm", "etc", "slurm.conf"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := peer(ctx, "down"); err != nil {
			host.Logf("slurm: %v", err)
		}
	}, nil
}
