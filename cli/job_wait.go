package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/internal/backoff"
)

// Waiting for a job: submit --wait and job wait.

// ended reports whether j has ended: for an array, every task.
func ended(j *dspool.Job) bool {
	if j.Array != nil {
		return j.Array.Done()
	}
	return j.State.Terminal()
}

// jobExit turns a finished job into the CLI's exit status; an array
// exits 0 only if every task succeeded.
func jobExit(j *dspool.Job) error {
	if j.Array != nil {
		if j.Array.State() == dspool.JobSucceeded {
			return nil
		}
		return &ExitError{Code: 1}
	}
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
func (a *App) waitOne(ctx context.Context, cl *api.Client, id string, timeout time.Duration) (*dspool.Job, error) {
	return a.waitWith(ctx, cl, id, timeout, a.progress())
}

// waitWith is waitOne with its progress line.
func (a *App) waitWith(ctx context.Context, cl *api.Client, id string, timeout time.Duration, p *progress) (*dspool.Job, error) {
	began := time.Now()
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
		j, err := cl.WaitRef(ctx, id, poll)
		var ue *api.UnavailableError
		if err != nil && ctx.Err() == nil && (errors.As(err, &ue) || dspool.ErrorCode(err) == dspool.EUnavailable) {
			if lost.IsZero() {
				lost = time.Now()
				fmt.Fprintf(a.Stderr, "dspool: lost the server (%v); job %s goes on, reconnecting\n", err, id)
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
				return nil, fmt.Errorf("stopped waiting; job %s goes on (see it with `dspool job show %s`, stop it with `dspool job cancel %s`)", id, id, id)
			}
			return nil, err
		}
		if !lost.IsZero() {
			fmt.Fprintf(a.Stderr, "dspool: reconnected to the server\n")
			lost = time.Time{}
		}
		retry.Reset()
		if ended(j) {
			return j, nil
		}
		last = j
		line := fmt.Sprintf("job %s %s", id, j.State)
		if j.Array != nil {
			line = fmt.Sprintf("array %d: %s", j.ID, taskCounts(j.Array))
			if j.Waiting != "" && j.Array.Counts[dspool.JobRunning] == 0 {
				line += ": " + j.Waiting
			}
			p.update(fmt.Sprintf("%s, %d s", line, int(time.Since(began).Seconds())))
			continue
		}
		if j.State == dspool.JobQueued {
			line = fmt.Sprintf("waiting for a node in pool %s: job %s queued", j.Pool, id)
			if j.Held {
				line = fmt.Sprintf("job %s queued, over a limit: %s", id, j.Waiting)
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
func waitedTooLong(j *dspool.Job, id string, timeout time.Duration) error {
	what := fmt.Sprintf("job %s did not finish within %s", id, timeout)
	if j != nil && j.State == dspool.JobQueued {
		what = fmt.Sprintf("job %s is still queued after %s", id, timeout)
		if j.Held {
			what += ", over a limit: " + j.Waiting
			return dspool.Errorf(dspool.EUnavailable, "%s. It stays queued until the limit has room: see the limits with `dspool team list`, or cancel it with `dspool job cancel %s`", what, id)
		}
		if j.Waiting != "" {
			what += fmt.Sprintf(", waiting for a node in pool %s: %s", j.Pool, j.Waiting)
		}
		what += fmt.Sprintf(". It stays queued: see why with `dspool pool events %s`, or cancel it with `dspool job cancel %s`", j.Pool, id)
		return dspool.Errorf(dspool.EUnavailable, "%s", what)
	}
	return dspool.Errorf(dspool.EUnavailable, "%s; it goes on: `dspool job show %s`", what, id)
}

// waitSubmitted is --wait of a job just submitted: its output and how it
// ended (follow), or with -o json the finished job; the command exits with
// the job's exit code, or 124 when timeout (0: none) ran out first.
func (a *App) waitSubmitted(ctx context.Context, cl *api.Client, sub *dspool.Job, timeout time.Duration) error {
	var j *dspool.Job
	var err error
	id := sub.Ref()
	if sub.Array != nil {
		id = fmt.Sprint(sub.ID)
	}
	if a.output == "json" || sub.Array != nil { // an array's output is in its tasks' logs
		j, err = a.waitOne(ctx, cl, id, timeout)
	} else {
		j, err = a.follow(ctx, cl, id, timeout)
	}
	if errors.As(err, new(*waitTimeoutError)) {
		// Not the job's exit status: 124, as timeout(1) exits.
		fmt.Fprintf(a.Stderr, "dspool: %s\n", dspool.Message(err))
		return &ExitError{Code: 124}
	}
	if err != nil {
		return err
	}
	if a.output == "json" {
		if err := a.printJob(j); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.Stderr, "dspool: %s\n", finished(j))
	}
	return jobExit(j)
}

// follow waits for job id as srun does: a progress line while it waits for
// a node, then its output on stdout as it comes, attempt after attempt, and
// a last line on stderr that says how it ended.
func (a *App) follow(ctx context.Context, cl *api.Client, id string, timeout time.Duration) (*dspool.Job, error) {
	p := a.progress()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streamed := make(chan struct{})
	go func() { defer close(streamed); a.streamAttempts(sctx, cl, id, p) }()
	j, err := a.waitWith(ctx, cl, id, timeout, p)
	if err != nil {
		cancel()
		<-streamed
		return nil, err
	}
	// The job has ended: the rest of its output is on its way.
	select {
	case <-streamed:
	case <-time.After(10 * time.Second):
		cancel()
		<-streamed
	}
	return j, nil
}

// streamAttempts copies the output of each attempt of job id to stdout as
// it is written, until the job ends. The progress line stops at the first
// byte.
func (a *App) streamAttempts(ctx context.Context, cl *api.Client, id string, p *progress) {
	out := &firstWrite{w: a.Stdout, first: p.stop}
	attempt := 0      // the attempt being printed
	var printed int64 // of its output
	for ctx.Err() == nil {
		j, err := cl.JobRef(ctx, id)
		if err != nil {
			sleep(ctx, 500*time.Millisecond)
			continue
		}
		if j.Attempt > attempt {
			if attempt > 0 {
				p.stop()
				fmt.Fprintf(a.Stderr, "dspool: attempt %d of job %s ended (%s); attempt %d runs\n", attempt, id, attemptEnd(j.Attempts, attempt), j.Attempt)
			}
			attempt, printed = j.Attempt, 0
		}
		if attempt == 0 {
			if j.State.Terminal() {
				return // it never started
			}
			// Following the latest attempt of a job that has none waits
			// for its first to start.
			if rc, err := cl.LogsRef(ctx, id, 0, true); err == nil {
				_, _ = io.Copy(io.Discard, rc)
				rc.Close()
			} else {
				sleep(ctx, 500*time.Millisecond)
			}
			continue
		}
		// Each follow prints the attempt's output from the start: what an
		// earlier one printed is skipped.
		if rc, err := cl.LogsRef(ctx, id, attempt, true); err == nil {
			n, _ := io.Copy(io.Discard, io.LimitReader(rc, printed))
			m, _ := io.Copy(out, rc)
			printed = n + m
			rc.Close()
		}
		if j.State.Terminal() && j.Attempt == attempt {
			return
		}
		if j.State != dspool.JobRunning {
			sleep(ctx, 500*time.Millisecond) // between attempts
		}
	}
}

// attemptEnd says how attempt n ended, from the job's attempts.
func attemptEnd(as []dspool.Attempt, n int) string {
	for _, at := range as {
		if at.Number == n {
			return endedHow(at.Reason, at.ExitCode, at.Message)
		}
	}
	return "it ended"
}

// endedHow says how an attempt or job ended: its reason, exit code and
// message.
func endedHow(reason dspool.Reason, code *int, msg string) string {
	s := string(reason)
	if reason == dspool.ReasonExit && code != nil {
		s = fmt.Sprintf("exit code %d", *code)
	} else if code != nil && *code != 0 {
		s += fmt.Sprintf(", exit code %d", *code)
	}
	if msg != "" {
		s += ": " + msg
	}
	return s
}

// finished is the last line of a followed job: how it ended, and where.
func finished(j *dspool.Job) string {
	took := ""
	if j.StartedAt != nil && j.FinishedAt != nil {
		d := j.FinishedAt.Sub(*j.StartedAt)
		if d < time.Second {
			d = d.Round(time.Millisecond)
		} else {
			d = d.Round(100 * time.Millisecond)
		}
		took = fmt.Sprintf(" in %s", d)
	}
	if j.Array != nil {
		return fmt.Sprintf("array %d %s: %s (see the tasks with `dspool job list --array %d`)", j.ID, j.Array.State(), taskCounts(j.Array), j.ID)
	}
	switch j.State {
	case dspool.JobSucceeded:
		return fmt.Sprintf("job %s succeeded%s", j.Ref(), took)
	case dspool.JobCancelled:
		return fmt.Sprintf("job %s was cancelled", j.Ref())
	}
	attempts := ""
	if j.Attempt > 1 {
		attempts = fmt.Sprintf(" after %d attempts", j.Attempt)
	}
	return fmt.Sprintf("job %s %s%s: %s (see `dspool job show %s`)", j.Ref(), j.State, attempts, endedHow(j.Reason, j.ExitCode, j.Message), j.Ref())
}

// taskCounts says how many tasks of an array are in each state, in the
// order of their lives: "950 queued, 50 running".
func taskCounts(a *dspool.ArraySummary) string {
	var parts []string
	for _, st := range []dspool.JobState{dspool.JobQueued, dspool.JobRunning, dspool.JobSucceeded, dspool.JobFailed, dspool.JobCancelled} {
		if n := a.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(parts) == 0 {
		return "no tasks"
	}
	return strings.Join(parts, ", ")
}

// firstWrite calls first before its first write.
type firstWrite struct {
	w     io.Writer
	first func()
	once  sync.Once
}

func (f *firstWrite) Write(b []byte) (int, error) {
	f.once.Do(f.first)
	return f.w.Write(b)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
