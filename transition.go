package dspool

import (
	"fmt"
	"time"
)

// Job state transitions live here, in one place, so the store, the tests and
// the simulator apply exactly the same rules. None of them does I/O.

// Fence checks that a report about attempt on node is about the job's current
// attempt. A stale report (an older attempt, another node, or a job that is
// no longer running) is an EConflict error and must be refused.
func (j *Job) Fence(attempt int, node string) error {
	if j.State != JobRunning || j.Attempt != attempt || j.Node != node {
		return Errorf(EConflict, "stale report for job %d attempt %d on node %s: the job is %s at attempt %d on node %q",
			j.ID, attempt, node, j.State, j.Attempt, j.Node)
	}
	return nil
}

// Place moves a queued job to running on node, holding gpus.
func (j *Job) Place(node string, gpus []int, now time.Time) error {
	if j.State != JobQueued {
		return Errorf(EConflict, "job %d is %s, not queued", j.ID, j.State)
	}
	j.State = JobRunning
	j.Node = node
	j.GPUIndices = gpus
	j.Reason, j.ExitCode, j.Message = "", nil, ""
	j.StartedAt, j.FinishedAt = nil, nil
	_ = now // the attempt starts when the agent says so, not at placement
	return nil
}

// AttemptResult is how an attempt ended.
type AttemptResult struct {
	ExitCode *int   `json:"exit_code"`
	Reason   Reason `json:"reason,omitempty"` // empty when the command exited 0
	Message  string `json:"message,omitempty"`
}

// Succeeded reports whether the attempt exited 0 without a failure reason.
func (r AttemptResult) Succeeded() bool {
	return r.Reason == "" && r.ExitCode != nil && *r.ExitCode == 0
}

// Finish applies the end of the current attempt: succeeded, cancelled if a
// cancel was requested, back to queued with attempt+1 if it was preempted
// (an eviction was requested and the attempt did not succeed before it
// reached the agent: one that checkpoints and exits 0 on SIGTERM ends with
// reason preempted) or failed with retries left, else failed. A preempted
// attempt counts against no retry: the retries left are those of the
// attempts that were not preempted. The caller has checked the fence.
func (j *Job) Finish(r AttemptResult, now time.Time) {
	j.ExitCode = r.ExitCode
	j.Message = r.Message
	j.Reason = r.Reason
	preempted := j.PreemptRequested
	j.PreemptRequested = false
	switch {
	case j.CancelRequested:
		j.State = JobCancelled
		j.Reason = ""
	case preempted && !r.Succeeded():
		j.Reason = ReasonPreempted
		j.Preemptions++
		j.requeue()
		return
	case r.Succeeded():
		j.State = JobSucceeded
		j.Reason = ""
	default:
		if j.Reason == "" {
			j.Reason = ReasonExit
		}
		if j.Attempt-j.Preemptions <= j.Retries {
			j.requeue()
			return
		}
		j.State = JobFailed
	}
	t := now
	j.FinishedAt = &t
}

// requeue puts the job back in the queue for its next attempt; its
// submission time, by which it ages, stays.
func (j *Job) requeue() {
	j.State = JobQueued
	j.Attempt++
	j.Node, j.GPUIndices = "", nil
	j.StartedAt = nil
}

// Preempt asks the running job's agent to evict it for a job of a higher
// score. It is an EConflict error unless the job is running, preemptible,
// and neither being cancelled nor already being preempted.
func (j *Job) Preempt() error {
	switch {
	case j.State != JobRunning:
		return Errorf(EConflict, "job %d is %s, not running: only a running job can be preempted", j.ID, j.State)
	case !j.Preemptible:
		return Errorf(EConflict, "job %d is not preemptible", j.ID)
	case j.CancelRequested || j.PreemptRequested:
		return Errorf(EConflict, "job %d is already stopping", j.ID)
	}
	j.PreemptRequested = true
	return nil
}

// Cancel cancels a queued job at once; a running job gets CancelRequested and
// becomes cancelled when its agent confirms the process tree is gone (or its
// node is lost). Cancelling a finished job is an EConflict error.
func (j *Job) Cancel(now time.Time) error {
	switch j.State {
	case JobQueued:
		j.State = JobCancelled
		t := now
		j.FinishedAt = &t
		return nil
	case JobRunning:
		j.CancelRequested = true
		return nil
	}
	return &Error{Code: EConflict, Message: fmt.Sprintf("job %d already %s", j.ID, j.State)}
}
