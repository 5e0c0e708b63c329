package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/bench/internal/openssh"
)

// Cell is one Jupyter load cell: conc clients in h4, each sending GET
// /user/NAME/api (Jupyter's version, 21 bytes) through the control plane's
// front door on its own keep-alive connection, in slices that take turns
// with the other nodes' (whose load moves from one second to the next on
// this machine). Its figures are the medians of the slices'.
type Cell struct {
	Conc    int         `json:"concurrency"`
	ReqPerS float64     `json:"req_per_s"`
	P50Ms   float64     `json:"p50_ms"`
	Slices  []host.Load `json:"slices"`
	Error   string      `json:"error,omitempty"`
}

// finish sets the cell's figures from its slices.
func (c *Cell) finish() {
	var rates, p50s []float64
	for _, l := range c.Slices {
		rates, p50s = append(rates, l.ReqPerS), append(p50s, l.P50Ms)
	}
	c.ReqPerS, c.P50Ms = median(rates), median(p50s)
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[(len(s)+1)/2-1]
}

// jupyterAvailable says why dspool's default Jupyter server cannot run.
func jupyterAvailable() error {
	if err := exec.Command(dspool.DefaultJupyter[0], "-c", "import jupyter_server").Run(); err != nil {
		return fmt.Errorf("no jupyter_server for %s (apt-get install python3-jupyter-server python3-ipykernel): %v", dspool.DefaultJupyter[0], err)
	}
	return nil
}

// jupyterPhase starts each variant's user's Jupyter server, waits until it
// answers through the front door, measures the cells (the variants taking
// turns within each concurrency) and stops the servers.
func jupyterPhase(ctx context.Context, c *cluster, n Sizes, vs []*Variant) {
	host.Logf("jupyter: starting a server for each of %d users", len(vs))
	var wg sync.WaitGroup
	for _, v := range vs {
		wg.Go(func() {
			t0 := time.Now()
			if err := startNotebook(ctx, v.v); err != nil {
				v.JupyterError = err.Error()
				return
			}
			host.Logf("jupyter: %s: answering through the front door after %.1fs", v.Key, time.Since(t0).Seconds())
		})
	}
	wg.Wait()
	defer func() {
		for _, v := range vs {
			if _, err := v.v.client.StopNotebook(context.WithoutCancel(ctx)); err != nil {
				host.Logf("jupyter: %s: stop: %v", v.Key, err)
			}
		}
	}()
	for _, conc := range n.Concurrency {
		cells := map[*Variant]*Cell{}
		for _, v := range vs {
			cells[v] = &Cell{Conc: conc}
			v.Jupyter = append(v.Jupyter, cells[v])
		}
		for range n.Slices {
			for _, v := range vs {
				cell := cells[v]
				if v.JupyterError != "" || ctx.Err() != nil {
					continue
				}
				load, err := hammer(ctx, c, v.v, conc, n.slice())
				if err != nil {
					cell.Error = err.Error()
					v.JupyterError = fmt.Sprintf("c=%d: %s", conc, err)
					continue
				}
				cell.Slices = append(cell.Slices, load)
			}
		}
		for _, v := range vs {
			if cell := cells[v]; cell.Error == "" && len(cell.Slices) > 0 {
				cell.finish()
				host.Logf("jupyter: %s: c=%d: %.0f req/s, p50 %.2f ms (the medians of %d slices of %s)", v.Key, conc, cell.ReqPerS, cell.P50Ms,
					len(cell.Slices), n.slice())
			}
		}
	}
}

// startNotebook starts v's user's server and waits until the front door
// passes a request to it.
func startNotebook(ctx context.Context, v *variant) error {
	nb, err := v.client.StartNotebook(ctx, v.pool)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	err = host.Poll(ctx, 90*time.Second, 20*time.Millisecond, func() (bool, error) {
		switch nb.State {
		case dspool.NotebookReady:
			return true, nil
		case dspool.NotebookStarting:
		default:
			return false, fmt.Errorf("the server is %s: %s", nb.State, nb.Message)
		}
		nb, err = v.client.Notebook(ctx)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("waiting for it to be ready: %w", err)
	}
	hc := v.client.HTTP
	var last error
	err = host.Poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		last = get(ctx, hc, v)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("GET /user/%s/api: %w (%v)", v.user, err, last)
	}
	return nil
}

// get sends one GET /user/NAME/api with the user's token.
func get(ctx context.Context, hc *http.Client, v *variant) error {
	req, err := http.NewRequestWithContext(ctx, "GET", v.plane.front+"/user/"+v.user+"/api", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+v.token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	return err
}

// hammer measures one slice of a cell.
func hammer(ctx context.Context, c *cluster, v *variant, conc int, d time.Duration) (host.Load, error) {
	hc := c.from(h4, host.LoadClient(conc, v.plane.tls))
	defer hc.CloseIdleConnections()
	return host.Hammer(ctx, conc, d, func() error { return get(ctx, hc, v) })
}

// jobsPhase measures submit->start on each variant's pool, the variants
// taking turns: the job's started_at (the agent's clock; every host has
// this machine's) minus the time just before the API call from h4, each
// job finished before the next; one untimed job first on each.
func jobsPhase(ctx context.Context, n Sizes, vs []*Variant) {
	host.Logf("jobs: %d rounds of submit `true` -> started_at on %d pools in turn", n.Jobs, len(vs))
	for _, v := range vs {
		v.Jobs = &openssh.Latency{}
		if _, err := runJob(ctx, v.v); err != nil {
			v.JobsError = "the first job: " + err.Error()
		}
	}
	for range n.Jobs {
		for _, v := range vs {
			if v.JobsError != "" || ctx.Err() != nil {
				continue
			}
			d, err := runJob(ctx, v.v)
			if err != nil {
				v.JobsError = err.Error()
				continue
			}
			v.Jobs.Add(d)
		}
	}
	for _, v := range vs {
		if v.JobsError != "" {
			host.Logf("jobs: %s: %s", v.Key, v.JobsError)
			continue
		}
		host.Logf("jobs: %s: submit->start p50 %.1f p90 %.1f ms (%.1f-%.1f)", v.Key, v.Jobs.P50Ms, v.Jobs.P90Ms, v.Jobs.MinMs, v.Jobs.MaxMs)
	}
}

// runJob submits `true` and waits until it has finished; it returns the
// time from just before the submission to its start.
func runJob(ctx context.Context, v *variant) (time.Duration, error) {
	spec := &dspool.JobSpec{Pool: v.pool, CPUs: 500, Memory: 64 << 20, Command: []string{"true"}}
	t0 := time.Now()
	j, err := v.client.SubmitJob(ctx, spec, 0)
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	for err == nil && !j.State.Terminal() {
		j, err = v.client.WaitJob(ctx, j.ID, 30*time.Second)
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("job %d: %w", j.ID, err)
	case j.State != dspool.JobSucceeded || j.StartedAt == nil:
		return 0, fmt.Errorf("job %d ended %s (%s): %s", j.ID, j.State, j.Reason, j.Message)
	}
	return j.StartedAt.Sub(t0), nil
}
