package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/host"
)

// preemptPool is a local pool of one node that allows preemption with
// preemptGrace.
const (
	preemptPool  = "preempt"
	preemptGrace = 3 * time.Second
)

// victimScript is a preemptible job that notes when SIGTERM comes (the
// eviction's decision is a few milliseconds before) in its job directory,
// then either checkpoints for a second and exits, or ignores it, to be
// killed at the grace.
func victimScript(ignore bool) string {
	after := "sleep 1; exit 0"
	if ignore {
		after = ":"
	}
	return `trap 'date +%s.%N > "$DSPOOL_JOB_DIR/term-$DSPOOL_ATTEMPT"; ` + after + `' TERM
while :; do sleep 0.1 & wait $!; done`
}

// benchPreemption measures preemption time: from the eviction (the
// victim's SIGTERM) to the start of the job of a higher priority it made
// room for, n rounds of a victim that checkpoints in a second and n of
// one that ignores SIGTERM and is killed at the grace.
func benchPreemption(ctx context.Context, up *upProc, share string, n int, r *Result) error {
	cl := up.cl
	err := host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		ns, err := cl.Nodes(ctx, preemptPool)
		return slices.ContainsFunc(ns, func(n *dspool.Node) bool { return n.State == dspool.NodeReady }), err
	})
	if err != nil {
		return fmt.Errorf("preemption: the pool's node: %w", err)
	}
	for _, ignore := range []bool{false, true} {
		var took []float64
		for range n {
			s, err := preemptOnce(ctx, up, share, ignore)
			if err != nil {
				return fmt.Errorf("preemption: %w", err)
			}
			took = append(took, s)
		}
		slices.Sort(took)
		p50, worst := took[(len(took)+1)/2-1], took[len(took)-1]
		if ignore {
			r.PreemptKillP50S, r.PreemptKillMaxS = p50, worst
		} else {
			r.PreemptCkptP50S, r.PreemptCkptMaxS = p50, worst
		}
		host.Logf("preemption (grace %s, victim ignores SIGTERM: %v): p50 %.2fs, max %.2fs over %d", preemptGrace, ignore, p50, worst, n)
	}
	r.PreemptGraceS = preemptGrace.Seconds()
	return nil
}

// preemptOnce runs a victim until it may be evicted (it has run for the
// grace), submits a job of a higher priority that needs its node, and
// returns the seconds from the victim's SIGTERM to that job's start.
func preemptOnce(ctx context.Context, up *upProc, share string, ignore bool) (float64, error) {
	cl := up.cl
	v := &dspool.JobSpec{Pool: preemptPool, CPUs: 2000, Memory: 64 << 20, Preemptible: true, Priority: new(int),
		Command: []string{"sh", "-c", victimScript(ignore)}}
	victim, err := cl.SubmitJob(ctx, v, 0)
	if err != nil {
		return 0, err
	}
	defer cl.CancelJob(context.WithoutCancel(ctx), victim.ID)
	err = host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		j, err := cl.Job(ctx, victim.ID)
		return err == nil && j.StartedAt != nil && time.Since(*j.StartedAt) > preemptGrace, err
	})
	if err != nil {
		return 0, fmt.Errorf("victim %d: %w", victim.ID, err)
	}
	high := 100
	h, err := cl.SubmitJob(ctx, &dspool.JobSpec{Pool: preemptPool, CPUs: 2000, Memory: 64 << 20, Priority: &high, Command: []string{"true"}}, 0)
	if err != nil {
		return 0, err
	}
	j, err := wait(ctx, cl, h.ID)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(share, "jobs", strconv.FormatInt(victim.ID, 10), "term-"+strconv.Itoa(victim.Attempt)))
	if err != nil {
		return 0, fmt.Errorf("victim %d noted no SIGTERM: %w", victim.ID, err)
	}
	term, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, fmt.Errorf("victim %d: its SIGTERM time %q: %w", victim.ID, b, err)
	}
	return j.StartedAt.Sub(time.Unix(0, int64(term*1e9))).Seconds(), nil
}
