package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/backoff"
)

// Waiting for a job: submit --wait and job wait.

// jobExit turns a finished job into the CLI's exit status.
func jobExit(j *dspool.Job) error {
	switch j.State {
	case dspool.JobSucceeded:
		return nil
	case dspool.JobFailed:
		if j.ExitCode != nil && *j.ExitCode > 0 && *j.ExitCode < 256 {
			return &ExitError{Code: *j.ExitCode}
		}
	}
	return &ExitError{Code: 1}
}

// waitOne waits for a job to finish, showing a progress line on a terminal.
func (a *App) waitOne(ctx context.Context, cl *api.Client, id int64, timeout time.Duration) (*dspool.Job, error) {
	began := time.Now()
	p := a.progress()
	defer p.done()
	var last *dspool.Job
	// A control plane that restarts (or a network that drops) does not end
	// the wait: it goes on, at jittered intervals so that every waiting CLI
	// does not come back at once, for up to reconnectFor.
	retry := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	var lost time.Time
	for {
		poll := 2 * time.Second
		if !p.tty {
			poll = 60 * time.Second
		}
		if timeout > 0 {
			left := timeout - time.Since(began)
			if left <= 0 {
				return nil, &waitTimeoutError{waitedTooLong(last, id, timeout)}
			}
			poll = min(poll, left)
		}
		j, err := cl.WaitJob(ctx, id, poll)
		var ue *api.UnavailableError
		if err != nil && ctx.Err() == nil && (errors.As(err, &ue) || dspool.ErrorCode(err) == dspool.EUnavailable) {
			if lost.IsZero() {
				lost = time.Now()
				fmt.Fprintf(a.Stderr, "dspool: lost the server (%v); job %d goes on, reconnecting\n", err, id)
			}
			if time.Since(lost) < reconnectFor {
				t := time.NewTimer(retry.Next())
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("stopped waiting; job %d goes on (see it with `dspool job show %d`, stop it with `dspool job cancel %d`)", id, id, id)
			}
			return nil, err
		}
		if !lost.IsZero() {
			fmt.Fprintf(a.Stderr, "dspool: reconnected to the server\n")
			lost = time.Time{}
		}
		retry.Reset()
		if j.State.Terminal() {
			return j, nil
		}
		last = j
		line := fmt.Sprintf("job %d %s", id, j.State)
		if j.State == dspool.JobQueued {
			line = fmt.Sprintf("waiting for a node in pool %s: job %d queued", j.Pool, id)
			if j.Held {
				line = fmt.Sprintf("job %d queued, over a limit: %s", id, j.Waiting)
			} else if j.Waiting != "" {
				line = fmt.Sprintf("waiting for a node in pool %s: %s", j.Pool, j.Waiting)
			}
		} else if j.Node != "" {
			node := j.Node
			if name := a.nodeNames([]*dspool.Job{j})[j.Node]; name != "" {
				node = name
			}
			line += " on " + node
		}
		p.update(fmt.Sprintf("%s, %d s", line, int(time.Since(began).Seconds())))
	}
}

// reconnectFor is how long a wait keeps trying to reach a server it lost.
const reconnectFor = 2 * time.Minute

// waitTimeoutError is a wait that ran out of time while the job goes on.
type waitTimeoutError struct{ err error }

func (e *waitTimeoutError) Error() string { return e.err.Error() }
func (e *waitTimeoutError) Unwrap() error { return e.err }

// waitedTooLong is the error of a wait that timed out: where the job is,
// and that it goes on.
func waitedTooLong(j *dspool.Job, id int64, timeout time.Duration) error {
	what := fmt.Sprintf("job %d did not finish within %s", id, timeout)
	if j != nil && j.State == dspool.JobQueued {
		what = fmt.Sprintf("job %d is still queued after %s", id, timeout)
		if j.Held {
			what += ", over a limit: " + j.Waiting
			return dspool.Errorf(dspool.EUnavailable, "%s. It stays queued until the limit has room: see the limits with `dspool team list`, or cancel it with `dspool job cancel %d`", what, id)
		}
		if j.Waiting != "" {
			what += fmt.Sprintf(", waiting for a node in pool %s: %s", j.Pool, j.Waiting)
		}
		what += fmt.Sprintf(". It stays queued: see why with `dspool pool events %s`, or cancel it with `dspool job cancel %d`", j.Pool, id)
		return dspool.Errorf(dspool.EUnavailable, "%s", what)
	}
	return dspool.Errorf(dspool.EUnavailable, "%s; it goes on: `dspool job show %d`", what, id)
}
