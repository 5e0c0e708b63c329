package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

// benchArrays measures arrays and dependencies on dspool: an array of
// n.Array tasks of `true` from submission to its last task's end, a chain
// of n.Chain jobs each after the one before from the first start to the
// last end, and one submission of an array of n.BigArray tasks into the
// pool that starts nothing (its time, and what the control plane's
// resident memory grew by).
func benchArrays(ctx context.Context, up *upProc, n Sizes, r *Result) error {
	cl := up.cl
	host.Logf("array: %d tasks of true", n.Array)
	s := spec(benchPool)
	s.Array = fmt.Sprintf("0-%d", n.Array-1)
	t0 := time.Now()
	a, err := cl.SubmitJob(ctx, s, 0)
	if err != nil {
		return fmt.Errorf("array: %w", err)
	}
	r.ArraySubmitMs = float64(time.Since(t0).Microseconds()) / 1000
	if _, err := waitArray(ctx, cl, a.ID); err != nil {
		return err
	}
	last, err := lastEnd(ctx, cl, a.ID, n.Array)
	if err != nil {
		return err
	}
	r.ArrayS = last.Sub(t0).Seconds()
	host.Logf("array: %.2fs (submitted in %.1f ms)", r.ArrayS, r.ArraySubmitMs)

	host.Logf("chain: %d jobs, each after the one before", n.Chain)
	ids := make([]int64, n.Chain)
	for i := range ids {
		s := spec(benchPool)
		if i > 0 {
			s.After = "ok:" + strconv.FormatInt(ids[i-1], 10)
		}
		j, err := cl.SubmitJob(ctx, s, 0)
		if err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		ids[i] = j.ID
	}
	lastJob, err := wait(ctx, cl, ids[len(ids)-1])
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	first, err := cl.Job(ctx, ids[0])
	if err != nil {
		return err
	}
	r.ChainS = lastJob.FinishedAt.Sub(*first.StartedAt).Seconds()
	host.Logf("chain: %.2fs from the first start to the last end", r.ChainS)

	host.Logf("array: one submission of %d tasks into a pool that starts nothing", n.BigArray)
	rss0 := host.RSSMiB(up.cmd.Process.Pid)
	s = spec(holdPool)
	s.Array = fmt.Sprintf("0-%d", n.BigArray-1)
	t0 = time.Now()
	big, err := cl.SubmitJob(ctx, s, 0)
	if err != nil {
		return fmt.Errorf("big array: %w", err)
	}
	r.BigArraySubmitS = time.Since(t0).Seconds()
	r.BigArrayRSSMiB = host.RSSMiB(up.cmd.Process.Pid) - rss0
	host.Logf("array: %d tasks submitted in %.2fs; the control plane grew by %.0f MiB", n.BigArray, r.BigArraySubmitS, r.BigArrayRSSMiB)
	t0 = time.Now()
	if _, err := cl.CancelJob(ctx, big.ID); err != nil {
		return fmt.Errorf("cancel the big array: %w", err)
	}
	r.BigArrayCancelS = time.Since(t0).Seconds()
	return nil
}

// waitArray waits until every task of array id has ended.
func waitArray(ctx context.Context, cl *api.Client, id int64) (*dspool.Job, error) {
	for {
		j, err := cl.WaitJob(ctx, id, time.Minute)
		if err != nil {
			return nil, fmt.Errorf("array %d: %w", id, err)
		}
		if j.Array == nil {
			return nil, fmt.Errorf("job %d is not an array", id)
		}
		if j.Array.Done() {
			if j.Array.Counts[dspool.JobSucceeded] != j.Array.Tasks {
				return nil, fmt.Errorf("array %d ended with %v", id, j.Array.Counts)
			}
			return j, nil
		}
	}
}

// lastEnd is when the last task of array id ended.
func lastEnd(ctx context.Context, cl *api.Client, id int64, tasks int) (time.Time, error) {
	var last time.Time
	q, seen := api.JobQuery{Array: id, Limit: 10000}, 0
	for {
		l, err := cl.Jobs(ctx, q)
		if err != nil {
			return last, err
		}
		for _, t := range l.Jobs {
			if t.FinishedAt != nil && t.FinishedAt.After(last) {
				last = *t.FinishedAt
			}
			seen++
		}
		if l.Next == 0 {
			break
		}
		q.Before = l.Next
	}
	if seen != tasks {
		return last, fmt.Errorf("array %d lists %d tasks, want %d", id, seen, tasks)
	}
	return last, nil
}
