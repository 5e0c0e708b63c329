package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/internal/backoff"
)

// Jobs: submit, find, follow and change them. A ref is a job's id (12),
// an array's (40: every task) or one task's (40_7).

// SubmitJob submits a job. When spec has an idempotency key, a failure to
// reach the server is retried (same key, so never duplicated) for up to
// retryFor.
func (c *Client) SubmitJob(ctx context.Context, spec *dspool.JobSpec, retryFor time.Duration) (*dspool.Job, error) {
	deadline := time.Now().Add(retryFor)
	retry := backoff.Backoff{Min: 50 * time.Millisecond, Max: time.Second}
	for {
		var j dspool.Job
		err := c.Do(ctx, "POST", "/api/v1/jobs", spec, &j)
		var ue *UnavailableError
		if err == nil || spec.IdempotencyKey == "" || (!errors.As(err, &ue) && dspool.ErrorCode(err) != dspool.EUnavailable) || time.Now().After(deadline) {
			if err != nil {
				return nil, err
			}
			return &j, nil
		}
		if c.Retrying != nil && retry.Window() == 0 {
			c.Retrying(err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retry.Next()):
		}
	}
}

// Job returns a job with its attempts.
func (c *Client) Job(ctx context.Context, id int64) (*JobDetail, error) {
	return c.JobRef(ctx, strconv.FormatInt(id, 10))
}

// JobRef returns the job that ref names (12, or 40_7 for a task of array
// 40) with its attempts; for a whole array (40), its first task, with the
// array summed up in Array.
func (c *Client) JobRef(ctx context.Context, ref string) (*JobDetail, error) {
	var j JobDetail
	return &j, c.Do(ctx, "GET", "/api/v1/jobs/"+url.PathEscape(ref), nil, &j)
}

// JobQuery selects jobs for Jobs.
type JobQuery struct {
	States   []string
	AllUsers bool
	Pool     string
	// Schedule selects the runs of one of the user's schedules, by name.
	Schedule string
	Limit    int
	Before   int64
	// Array lists the tasks of this array; Tasks lists tasks one by
	// one, where by default an array is one line.
	Array int64
	Tasks bool
}

// Jobs lists jobs, newest first.
func (c *Client) Jobs(ctx context.Context, q JobQuery) (*JobList, error) {
	v := url.Values{}
	if len(q.States) > 0 {
		v.Set("state", strings.Join(q.States, ","))
	}
	if q.AllUsers {
		v.Set("all", "true")
	}
	if q.Pool != "" {
		v.Set("pool", q.Pool)
	}
	if q.Schedule != "" {
		v.Set("schedule", q.Schedule)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.Array > 0 {
		v.Set("array", strconv.FormatInt(q.Array, 10))
	}
	if q.Tasks {
		v.Set("tasks", "true")
	}
	var l JobList
	return &l, c.Do(ctx, "GET", "/api/v1/jobs?"+v.Encode(), nil, &l)
}

// CancelJob cancels a job.
func (c *Client) CancelJob(ctx context.Context, id int64) (*dspool.Job, error) {
	return c.CancelRef(ctx, strconv.FormatInt(id, 10))
}

// CancelRef cancels the job, task or whole array that ref names.
func (c *Client) CancelRef(ctx context.Context, ref string) (*dspool.Job, error) {
	var j dspool.Job
	return &j, c.Do(ctx, "POST", "/api/v1/jobs/"+url.PathEscape(ref)+"/cancel", nil, &j)
}

// HoldRef holds (hold) or releases the queued job, task or every queued
// task of the array that ref names.
func (c *Client) HoldRef(ctx context.Context, ref string, hold bool) (*dspool.Job, error) {
	verb := "release"
	if hold {
		verb = "hold"
	}
	var j dspool.Job
	return &j, c.Do(ctx, "POST", "/api/v1/jobs/"+url.PathEscape(ref)+"/"+verb, nil, &j)
}

// SetPriority sets the priority of the queued job or task that ref names,
// or of every queued task of the array.
func (c *Client) SetPriority(ctx context.Context, ref string, priority int) (*dspool.Job, error) {
	var j dspool.Job
	return &j, c.Do(ctx, "POST", "/api/v1/jobs/"+url.PathEscape(ref)+"/priority", JobPriority{Priority: &priority}, &j)
}

// WaitJob long-polls until the job has finished or timeout passes, and
// returns its state then.
func (c *Client) WaitJob(ctx context.Context, id int64, timeout time.Duration) (*dspool.Job, error) {
	return c.WaitRef(ctx, strconv.FormatInt(id, 10), timeout)
}

// WaitRef is WaitJob for the job, task or whole array that ref names.
func (c *Client) WaitRef(ctx context.Context, ref string, timeout time.Duration) (*dspool.Job, error) {
	var j dspool.Job
	path := fmt.Sprintf("/api/v1/jobs/%s/wait?timeout=%s", url.PathEscape(ref), timeout)
	return &j, c.Do(ctx, "GET", path, nil, &j)
}

// Logs streams the output of a job's attempt (0 means the latest). With
// follow, the stream stays open until the attempt ends.
func (c *Client) Logs(ctx context.Context, id int64, attempt int, follow bool) (io.ReadCloser, error) {
	return c.LogsRef(ctx, strconv.FormatInt(id, 10), attempt, follow)
}

// LogsRef is Logs for the job or task that ref names.
func (c *Client) LogsRef(ctx context.Context, ref string, attempt int, follow bool) (io.ReadCloser, error) {
	path := fmt.Sprintf("/api/v1/jobs/%s/logs?attempt=%d&follow=%t", url.PathEscape(ref), attempt, follow)
	resp, err := c.request(ctx, "GET", path, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
