package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

// coldAdmin is the admin `dspool up` creates; the jobs run as it.
const coldAdmin = "dspoolcold"

// ColdStart is a job submitted to a local pool with no node -> running,
// with the real binary under `dspool up`: the autoscaler sees the job,
// starts an agent, the agent registers and the job is placed on it.
type ColdStart struct {
	Runs int       `json:"runs"`
	S    []float64 `json:"seconds"`
	P50S float64   `json:"p50_s"`
	MaxS float64   `json:"max_s"`
}

func coldStart(ctx context.Context, runs int, keep bool) (*ColdStart, error) {
	tmp, done, err := host.TempDir("dspool-bench-cold-", keep)
	if err != nil {
		return nil, err
	}
	defer done()
	bin, err := host.BuildDspool(ctx, tmp)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 && !host.UserExists(coldAdmin) {
		defer host.RemoveUser(coldAdmin)
	}
	log, err := os.Create(filepath.Join(tmp, "up.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	config := filepath.Join(tmp, "config.json")
	cmd := exec.Command(bin, "up", "--data", filepath.Join(tmp, "data"), "--listen", "127.0.0.1:0", "--ssh-listen", "off",
		"--heartbeat", "200ms", "--nodes", "0", "--admin", coldAdmin, "--uid-base", strconv.Itoa(host.UIDBase()+50))
	cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+config)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	pool := &dspool.Pool{Name: "cold", Provider: dspool.Provider(dspool.ProviderLocal), Work: []dspool.Work{dspool.WorkBatch},
		Node:      dspool.NodeSize{CPUs: 1000, Memory: 1 << 30},
		Autoscale: &dspool.Autoscale{Max: 1, IdleTimeout: dspool.Duration(time.Second)}}
	var cl *api.Client
	err = host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("`dspool up` exited: %s", host.Tail(mustRead(log.Name()), 5))
		default:
		}
		var ok bool
		if cl, ok = host.LoginClient(config); !ok {
			return false, nil
		}
		_, err := cl.ApplyPools(ctx, []*dspool.Pool{pool})
		return err == nil, nil
	})
	if err != nil {
		return nil, err
	}
	r := &ColdStart{Runs: runs}
	for i := range runs {
		// The pool is back at zero before each run.
		if err := host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
			ns, err := cl.Nodes(ctx, pool.Name)
			return err == nil && len(ns) == 0, err
		}); err != nil {
			return nil, fmt.Errorf("run %d: the pool did not return to zero nodes: %w", i+1, err)
		}
		j, err := cl.SubmitJob(ctx, &dspool.JobSpec{Pool: pool.Name, CPUs: 1000, Memory: 64 << 20, Command: []string{"true"}}, 0)
		if err != nil {
			return nil, err
		}
		for !j.State.Terminal() {
			if j, err = cl.WaitJob(ctx, j.ID, time.Minute); err != nil {
				return nil, err
			}
		}
		if j.State != dspool.JobSucceeded || j.StartedAt == nil {
			return nil, errors.New("job " + strconv.FormatInt(j.ID, 10) + " ended " + string(j.State) + ": " + j.Message)
		}
		s := j.StartedAt.Sub(j.SubmittedAt).Seconds()
		host.Logf("cold start %d: %.3f s", i+1, s)
		r.S = append(r.S, s)
	}
	sorted := slices.Sorted(slices.Values(r.S))
	r.P50S, r.MaxS = sorted[(len(sorted)-1)/2], sorted[len(sorted)-1]
	return r, nil
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
