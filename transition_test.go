package dspool_test

import (
	"testing"
	"time"

	"github.com/dspool/dspool"
)

func intp(n int) *int { return &n }

func TestFinish(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name        string
		job         dspool.Job
		result      dspool.AttemptResult
		wantState   dspool.JobState
		wantReason  dspool.Reason
		wantAttempt int
		wantDone    bool
	}{
		{"exit 0 succeeds", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{ExitCode: intp(0)}, dspool.JobSucceeded, "", 1, true},
		{"exit 3 fails", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{ExitCode: intp(3)}, dspool.JobFailed, dspool.ReasonExit, 1, true},
		{"failure with retries left requeues", dspool.Job{State: dspool.JobRunning, Attempt: 1, Retries: 2, Node: "n1"}, dspool.AttemptResult{ExitCode: intp(1)}, dspool.JobQueued, dspool.ReasonExit, 2, false},
		{"last retry fails", dspool.Job{State: dspool.JobRunning, Attempt: 3, Retries: 2}, dspool.AttemptResult{ExitCode: intp(1)}, dspool.JobFailed, dspool.ReasonExit, 3, true},
		{"timeout fails", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{ExitCode: intp(143), Reason: dspool.ReasonTimeout}, dspool.JobFailed, dspool.ReasonTimeout, 1, true},
		{"node lost is retried", dspool.Job{State: dspool.JobRunning, Attempt: 1, Retries: 1}, dspool.AttemptResult{Reason: dspool.ReasonNodeLost}, dspool.JobQueued, dspool.ReasonNodeLost, 2, false},
		{"node lost without retries fails", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{Reason: dspool.ReasonNodeLost}, dspool.JobFailed, dspool.ReasonNodeLost, 1, true},
		{"start error fails", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{Reason: dspool.ReasonStartError, Message: "not found"}, dspool.JobFailed, dspool.ReasonStartError, 1, true},
		{"cancel requested wins over retries", dspool.Job{State: dspool.JobRunning, Attempt: 1, Retries: 5, CancelRequested: true}, dspool.AttemptResult{ExitCode: intp(143)}, dspool.JobCancelled, "", 1, true},
		{"cancel requested wins over success", dspool.Job{State: dspool.JobRunning, Attempt: 1, CancelRequested: true}, dspool.AttemptResult{ExitCode: intp(0)}, dspool.JobCancelled, "", 1, true},
		{"a preempted attempt that checkpoints and exits 0 requeues", dspool.Job{State: dspool.JobRunning, Attempt: 1, Preemptible: true, PreemptRequested: true}, dspool.AttemptResult{ExitCode: intp(0), Reason: dspool.ReasonPreempted}, dspool.JobQueued, dspool.ReasonPreempted, 2, false},
		{"an attempt that succeeded before its eviction reached it succeeds", dspool.Job{State: dspool.JobRunning, Attempt: 1, Preemptible: true, PreemptRequested: true}, dspool.AttemptResult{ExitCode: intp(0)}, dspool.JobSucceeded, "", 1, true},
		{"a preempted attempt without retries requeues", dspool.Job{State: dspool.JobRunning, Attempt: 1, Preemptible: true, PreemptRequested: true}, dspool.AttemptResult{ExitCode: intp(137), Reason: dspool.ReasonPreempted}, dspool.JobQueued, dspool.ReasonPreempted, 2, false},
		{"preempted attempts count against no retry", dspool.Job{State: dspool.JobRunning, Attempt: 3, Retries: 1, Preemptible: true, Preemptions: 2}, dspool.AttemptResult{ExitCode: intp(1)}, dspool.JobQueued, dspool.ReasonExit, 4, false},
		{"a cancel wins over a preemption", dspool.Job{State: dspool.JobRunning, Attempt: 1, Preemptible: true, PreemptRequested: true, CancelRequested: true}, dspool.AttemptResult{ExitCode: intp(143)}, dspool.JobCancelled, "", 1, true},
		{"no exit code and no reason is a failure", dspool.Job{State: dspool.JobRunning, Attempt: 1}, dspool.AttemptResult{}, dspool.JobFailed, dspool.ReasonExit, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			j.Finish(tt.result, now)
			if j.State != tt.wantState || j.Reason != tt.wantReason || j.Attempt != tt.wantAttempt {
				t.Errorf("got state %s reason %q attempt %d, want %s %q %d", j.State, j.Reason, j.Attempt, tt.wantState, tt.wantReason, tt.wantAttempt)
			}
			if got := j.FinishedAt != nil; got != tt.wantDone {
				t.Errorf("finished_at set = %v, want %v", got, tt.wantDone)
			}
			if j.State == dspool.JobQueued && (j.Node != "" || j.GPUIndices != nil) {
				t.Errorf("requeued job still holds node %q gpus %v", j.Node, j.GPUIndices)
			}
		})
	}
}

func TestPreempt(t *testing.T) {
	tests := []struct {
		name string
		job  dspool.Job
		ok   bool
	}{
		{"a running preemptible job", dspool.Job{State: dspool.JobRunning, Preemptible: true}, true},
		{"not preemptible", dspool.Job{State: dspool.JobRunning}, false},
		{"queued", dspool.Job{State: dspool.JobQueued, Preemptible: true}, false},
		{"being cancelled", dspool.Job{State: dspool.JobRunning, Preemptible: true, CancelRequested: true}, false},
		{"being preempted", dspool.Job{State: dspool.JobRunning, Preemptible: true, PreemptRequested: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			err := j.Preempt()
			if (err == nil) != tt.ok || j.PreemptRequested != (tt.ok || tt.job.PreemptRequested) {
				t.Errorf("Preempt of %+v: err %v, preempt requested %v; want ok %v", tt.job, err, j.PreemptRequested, tt.ok)
			}
			if err != nil && dspool.ErrorCode(err) != dspool.EConflict {
				t.Errorf("error code %s, want conflict", dspool.ErrorCode(err))
			}
		})
	}
}

func TestFence(t *testing.T) {
	running := dspool.Job{ID: 1, State: dspool.JobRunning, Attempt: 2, Node: "n1"}
	tests := []struct {
		name    string
		job     dspool.Job
		attempt int
		node    string
		ok      bool
	}{
		{"current attempt on its node", running, 2, "n1", true},
		{"older attempt", running, 1, "n1", false},
		{"newer attempt", running, 3, "n1", false},
		{"other node", running, 2, "n2", false},
		{"job requeued", dspool.Job{ID: 1, State: dspool.JobQueued, Attempt: 2}, 2, "n1", false},
		{"job finished", dspool.Job{ID: 1, State: dspool.JobSucceeded, Attempt: 2, Node: "n1"}, 2, "n1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.job.Fence(tt.attempt, tt.node)
			if (err == nil) != tt.ok {
				t.Fatalf("Fence(%d, %s) = %v, want ok=%v", tt.attempt, tt.node, err, tt.ok)
			}
			if err != nil && dspool.ErrorCode(err) != dspool.EConflict {
				t.Errorf("code = %s, want conflict", dspool.ErrorCode(err))
			}
		})
	}
}

func TestCancel(t *testing.T) {
	now := time.Now()
	q := dspool.Job{State: dspool.JobQueued}
	if err := q.Cancel(now); err != nil || q.State != dspool.JobCancelled || q.FinishedAt == nil {
		t.Errorf("queued: got %s %v, want cancelled at once", q.State, err)
	}
	r := dspool.Job{State: dspool.JobRunning}
	if err := r.Cancel(now); err != nil || r.State != dspool.JobRunning || !r.CancelRequested {
		t.Errorf("running: got %s requested=%v %v, want running with cancel requested", r.State, r.CancelRequested, err)
	}
	for _, st := range []dspool.JobState{dspool.JobSucceeded, dspool.JobFailed, dspool.JobCancelled} {
		j := dspool.Job{State: st}
		if err := j.Cancel(now); dspool.ErrorCode(err) != dspool.EConflict {
			t.Errorf("%s: got %v, want conflict", st, err)
		}
	}
}

func TestPlace(t *testing.T) {
	j := dspool.Job{State: dspool.JobQueued, Attempt: 2}
	if err := j.Place("n1", []int{1}, time.Now()); err != nil || j.State != dspool.JobRunning || j.Node != "n1" {
		t.Fatalf("got %s on %q (%v), want running on n1", j.State, j.Node, err)
	}
	if err := j.Place("n2", nil, time.Now()); dspool.ErrorCode(err) != dspool.EConflict {
		t.Errorf("placing a running job: got %v, want conflict", err)
	}
}
