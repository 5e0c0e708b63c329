package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// How the control plane goes down.
const (
	kill9   = "kill -9"
	sigterm = "SIGTERM"
)

// pollEvery is how often each figure is asked for while the control plane
// starts: its resolution.
const pollEvery = 5 * time.Millisecond

// Restart is what one restart of the first part measured, in seconds from
// the exec of the new process.
type Restart struct {
	Kind  string  `json:"kind"`
	StopS float64 `json:"stop_s,omitempty"` // SIGTERM: the signal -> the old process's exit
	// ReadyzS: GET /readyz answered 200.
	ReadyzS float64 `json:"readyz_s"`
	// JobShowS: a queued job's detail answered, right; JobListS: the
	// first page of every user's jobs (100), right.
	JobShowS float64 `json:"job_show_s"`
	JobListS float64 `json:"job_list_s"`
	// RecoveredS: the server had taken up the store's active sessions,
	// pending (its log); SessionsS: the last of them confirmed by its
	// node's report (its log).
	RecoveredS     float64 `json:"sessions_recovered_s"`
	SessionsS      float64 `json:"sessions_confirmed_s"`
	SessionsTaken  int     `json:"sessions_confirmed"`
	SessionsEnded  int     `json:"sessions_ended"`
	SessionsReason string  `json:"sessions_ended_reason,omitempty"`
	// NodesS: both agents connected (dspool_agents_connected).
	NodesS float64 `json:"nodes_s"`
	// SubmitS: a job submitted from the exec on was accepted; JobStartS:
	// its process started (its started_at, the agent's clock).
	SubmitS   float64 `json:"submit_s"`
	JobStartS float64 `json:"job_start_s"`
}

// restart takes the first part's control plane down as kind says, starts
// it again on the same data and measures how soon it serves.
func restart(ctx context.Context, f *filled, kind string, sessions, seq int) (Restart, error) {
	r := Restart{Kind: kind}
	p := f.p
	switch kind {
	case kill9:
		p.kill()
	case sigterm:
		d, err := p.term()
		if err != nil {
			return r, err
		}
		r.StopS = d.Seconds()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0, err := p.exec()
	if err != nil {
		return r, err
	}
	since := func() float64 { return time.Since(t0).Seconds() }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// Each figure has a client of its own: fresh connections, and no
	// figure waits behind another's request.
	poll := func(what string, into *float64, done func(*api.Client) bool) {
		wg.Go(func() {
			cl := p.client(p.admin.Token)
			for ctx.Err() == nil {
				if done(cl) {
					*into = since()
					return
				}
				if err := p.exited(); err != nil {
					fail(fmt.Errorf("%s: %w", what, err))
					return
				}
				time.Sleep(pollEvery)
			}
			fail(fmt.Errorf("%s: not within a minute of the exec (the server's log: %s)", what, p.log))
		})
	}
	poll("GET /readyz", &r.ReadyzS, func(cl *api.Client) bool {
		return get(ctx, cl, "/readyz") == nil
	})
	poll("job show", &r.JobShowS, func(cl *api.Client) bool {
		j, err := cl.Job(ctx, f.queued)
		return err == nil && j.Job != nil && j.ID == f.queued && j.State == dspool.JobQueued
	})
	poll("job list", &r.JobListS, func(cl *api.Client) bool {
		l, err := cl.Jobs(ctx, api.JobQuery{AllUsers: true, Limit: 100})
		return err == nil && len(l.Jobs) == 100
	})
	poll("both agents connected", &r.NodesS, func(cl *api.Client) bool {
		n, err := gauge(ctx, cl, "dspool_agents_connected")
		return err == nil && n >= 2
	})
	wg.Go(func() {
		if err := newJob(ctx, p, fmt.Sprintf("bench-restart-%d", seq), t0, &r); err != nil {
			fail(err)
		}
	})
	if sessions > 0 {
		wg.Go(func() {
			if err := watchSessions(ctx, p.log, sessions, t0, &r); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	return r, errors.Join(errs...)
}

// newJob submits a job as soon as the server takes it and waits until its
// process has started.
func newJob(ctx context.Context, p *plane, key string, t0 time.Time, r *Restart) error {
	cl := p.client(p.admin.Token)
	var j *dspool.Job
	for {
		var err error
		j, err = cl.SubmitJob(ctx, &dspool.JobSpec{Command: []string{"true"}, CPUs: 100, Memory: 32 << 20, IdempotencyKey: key}, 0)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("submit a job: not accepted within a minute of the exec: %w", err)
		}
		time.Sleep(pollEvery)
	}
	r.SubmitS = time.Since(t0).Seconds()
	for ctx.Err() == nil {
		d, err := cl.Job(ctx, j.ID)
		if err == nil && d.StartedAt != nil {
			r.JobStartS = d.StartedAt.Sub(t0).Seconds()
			return nil
		}
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("job %d, submitted after the restart, did not start within a minute of the exec (the server's log: %s)", j.ID, p.log)
}

// watchSessions reads the new run's log until every session of the store
// is confirmed by its node, or ended.
func watchSessions(ctx context.Context, log string, sessions int, t0 time.Time, r *Restart) error {
	var off int64
	var last time.Time
	for ctx.Err() == nil {
		off = logLines(log, off, func(line string) {
			at, msg, attrs := parseLogLine(line)
			switch msg {
			case "took up the sessions of the previous run; each waits for its node to report it":
				r.RecoveredS = at.Sub(t0).Seconds()
			case "session taken up after a restart":
				r.SessionsTaken++
				last = at
			case "session ended":
				r.SessionsEnded++
				r.SessionsReason = attrs["reason"]
			}
		})
		if r.SessionsTaken+r.SessionsEnded >= sessions {
			r.SessionsS = last.Sub(t0).Seconds()
			return nil
		}
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("sessions: %d of %d confirmed and %d ended within a minute of the exec (the server's log: %s)", r.SessionsTaken, sessions, r.SessionsEnded, log)
}

// parseLogLine reads a line of the server's log (slog's text format): its
// time, message and the other attributes.
func parseLogLine(line string) (time.Time, string, map[string]string) {
	attrs := map[string]string{}
	s := strings.TrimSpace(line)
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		attrs[k] = v
		s = strings.TrimLeft(rest, " ")
	}
	at, _ := time.Parse(time.RFC3339Nano, attrs["time"])
	return at, attrs["msg"], attrs
}

// get asks for path and wants a 200.
func get(ctx context.Context, cl *api.Client, path string) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", cl.Server+path, nil)
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// gauge reads a metric without labels from /metrics.
func gauge(ctx context.Context, cl *api.Client, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", cl.Server+"/metrics", nil)
	resp, err := cl.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}
