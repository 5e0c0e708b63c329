package api

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/dspool/dspool"
)

// Rerun submits a new job with the spec of the job ref names (its command,
// pool, team, resources, time limit, retries, priority, environment,
// secrets and working directory); an array's ref submits a new array of
// the same tasks, with failed only those that did not succeed. The old
// job must be the caller's: a rerun runs as whoever submits it, in their
// home. A priority past the caller's range gives way to their default,
// and defaulted, when set, is told why.
func (c *Client) Rerun(ctx context.Context, ref string, failed bool, defaulted func(old int, why string)) (*dspool.Job, error) {
	old, err := c.JobRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	if me, err := c.WhoAmI(ctx); err != nil {
		return nil, err
	} else if me.Name != old.User {
		return nil, dspool.Errorf(dspool.EForbidden, "job %s is %s's: a rerun would run as you (%s), in your home; ask %s to rerun it, or submit it yourself with `dspool job submit`", ref, old.User, me.Name, old.User)
	}
	spec := rerunSpec(old.Job)
	if old.Array != nil {
		if err := c.rerunArray(ctx, old.Job, spec, failed); err != nil {
			return nil, err
		}
	} else if failed {
		return nil, dspool.Invalid("--failed", "job %s is not an array: rerun it without --failed", ref)
	}
	j, err := c.SubmitJob(ctx, spec, 30*time.Second)
	var e *dspool.Error
	if errors.As(err, &e) && e.Code == dspool.EInvalid && e.Field == "priority" {
		// A priority an admin or maintainer gave the old job may be past
		// the submitter's range: the rerun takes the default rather than
		// failing.
		if defaulted != nil {
			defaulted(old.Priority, e.Message)
		}
		spec.Priority = nil
		j, err = c.SubmitJob(ctx, spec, 30*time.Second)
	}
	return j, err
}

// rerunArray makes spec an array like old's: its indices (with failed,
// those of the tasks that did not succeed), its cap, and each task's own
// variables as a sweep, read from its tasks.
func (c *Client) rerunArray(ctx context.Context, old *dspool.Job, spec *dspool.JobSpec, failed bool) error {
	var tasks []*dspool.Job
	q := JobQuery{Array: old.ID, Limit: 10000}
	for {
		l, err := c.Jobs(ctx, q)
		if err != nil {
			return err
		}
		tasks = append(tasks, l.Jobs...)
		if l.Next == 0 {
			break
		}
		q.Before = l.Next
	}
	slices.SortFunc(tasks, func(x, y *dspool.Job) int { return cmp.Compare(*x.ArrayIndex, *y.ArrayIndex) })
	if failed {
		tasks = slices.DeleteFunc(tasks, func(t *dspool.Job) bool { return t.State == dspool.JobSucceeded || !t.State.Terminal() })
		if len(tasks) == 0 {
			return dspool.Invalid("--failed", "no task of array %d failed or was cancelled: rerun the whole array without --failed", old.ID)
		}
	}
	ar := dspool.ArraySpec{MaxRunning: old.Array.MaxRunning}
	same := true
	for _, t := range tasks {
		ar.Indices = append(ar.Indices, *t.ArrayIndex)
		same = same && maps.Equal(t.Env, tasks[0].Env)
	}
	spec.Array = ar.String()
	if !same {
		spec.Env = nil
		for _, t := range tasks {
			spec.Sweep = append(spec.Sweep, maps.Clone(t.Env))
		}
	} else {
		spec.Env = maps.Clone(tasks[0].Env)
	}
	return nil
}

// rerunSpec is the spec of a new job like j, with a key of its own.
func rerunSpec(j *dspool.Job) *dspool.JobSpec {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &dspool.JobSpec{Pool: j.Pool, Team: j.Team, Name: j.Name, CPUs: j.CPUs, Memory: j.Memory, GPUs: j.GPUs, GPUType: j.GPUType, GPUMemory: j.GPUMemory,
		TimeLimit: j.TimeLimit, Retries: j.Retries, Priority: &j.Priority, Env: maps.Clone(j.Env), Workdir: j.Workdir,
		Command: slices.Clone(j.Command), Secrets: slices.Clone(j.Secrets), Image: j.Image, IdempotencyKey: hex.EncodeToString(b)}
}
