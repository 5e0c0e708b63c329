// Command dashboard measures the web dashboard with the real binary under
// `dspool up`: the job list page of a user with 10,000 jobs (the time the
// server takes to answer it, p99, target <= 50 ms; and its first paint in
// headless Chromium, target <= 300 ms), and a job's live log, from the
// job's write to the browser (target <= 200 ms). See bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
	"github.com/dspool/dspool/internal/chromium"
)

const (
	benchAdmin = "dspooldash" // the admin `dspool up` creates, whose jobs fill the list
	// uidOffset keeps this benchmark's uids apart from the other
	// benchmarks'.
	uidOffset = 250
	password  = "dashboard bench password"
)

// Targets.
const (
	targetServerP99 = 50.0
	targetPaint     = 300.0
	targetLog       = 200.0
)

// Result is what a run measured.
type Result struct {
	Jobs        int     `json:"jobs"`
	CPUs        int     `json:"cpus"`
	Version     string  `json:"version,omitempty"`
	Server      *Dist   `json:"server_ms"`      // GET /jobs, as the client sees it on a kept-alive connection
	Paint       *Dist   `json:"first_paint_ms"` // first contentful paint of /jobs, from navigation start
	Log         *Dist   `json:"log_ms"`         // a log line, from the job's write to the page
	Load1Before float64 `json:"load1_before"`
	Load1After  float64 `json:"load1_after"`
}

// Dist is a set of samples in ms with nearest-rank percentiles.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func newDist(samples []float64) *Dist {
	s := slices.Sorted(slices.Values(samples))
	return &Dist{N: len(s), P50: host.Pct(s, 50), P99: host.Pct(s, 99), Max: s[len(s)-1]}
}

func main() {
	short := flag.Bool("short", false, "fewer jobs and runs: a quick check that everything works")
	jobs := flag.Int("jobs", 0, "jobs of the user (default 10000; 1000 with -short)")
	runs := flag.Int("runs", 0, "page loads timed on the server (default 200; 20 with -short); a tenth of them in Chromium")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data, its log up.log, screenshots)")
	flag.Parse()
	n, r := 10000, 200
	if *short {
		n, r = 1000, 20
	}
	if *jobs > 0 {
		n = *jobs
	}
	if *runs > 0 {
		r = *runs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, n, r, *bin, *jsonOut, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, runs int, bin, jsonOut string, keep bool) error {
	res := &Result{Jobs: n, CPUs: runtime.NumCPU(), Load1Before: host.Load1()}
	pr, err := host.Prepare(ctx, "dspool-bench-dashboard-", bin, keep)
	if err != nil {
		return err
	}
	defer pr.Done()
	res.Version = pr.Version
	defer host.NewAccount(benchAdmin)()
	up, err := host.StartUp(ctx, pr.Bin, pr.Dir, []string{"--data", filepath.Join(pr.Dir, "data"), "--listen", "127.0.0.1:0",
		"--ssh-listen", "off", "--nodes", "1", "--admin", benchAdmin, "--uid-base", strconv.Itoa(host.FreeUIDBase(61000) + uidOffset)},
		func(cl *api.Client) bool {
			n, err := cl.Nodes(ctx, "")
			return err == nil && len(n) > 0 && n[0].State == dspool.NodeReady
		})
	if err != nil {
		return err
	}
	defer up.Stop()
	if err := fill(ctx, up.Client, n); err != nil {
		return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
	}
	if err := up.Client.SetPassword(ctx, benchAdmin, password); err != nil {
		return err
	}
	web, err := logIn(ctx, up.Client)
	if err != nil {
		return err
	}
	if res.Server, err = serverTimes(ctx, web, up.Client.Server, runs); err != nil {
		return err
	}
	b, err := chromium.Start(ctx, pr.Dir, 1280, 900)
	if errors.Is(err, chromium.ErrNoChromium) {
		fmt.Println("Chromium is not installed (apt-get install chromium): first paint and log latency not measured")
	} else if err != nil {
		return err
	} else {
		defer b.Close()
		if res.Paint, err = firstPaint(ctx, b.Page, up.Client.Server, max(runs/10, 3)); err == nil {
			res.Log, err = logLatency(ctx, b.Page, up.Client)
		}
		if err != nil {
			return fmt.Errorf("%w (dspool's log: %s; keep it with -keep)", err, up.Log)
		}
	}
	res.Load1After = host.Load1()
	report(os.Stdout, res)
	return host.WriteJSON(jsonOut, res)
}

// fill gives the user n jobs: submitted to a pool with no machine, so
// that they never run, then cancelled, as a long history is.
func fill(ctx context.Context, cl *api.Client, n int) error {
	if _, err := cl.ApplyPools(ctx, []*dspool.Pool{{Name: "hold", Provider: dspool.Provider(dspool.ProviderStatic),
		Node: dspool.NodeSize{CPUs: 1000, Memory: 1 << 30}}}); err != nil {
		return fmt.Errorf("apply the pool hold: %w", err)
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				j, err := cl.SubmitJob(ctx, &dspool.JobSpec{Pool: "hold", Name: "sweep", CPUs: 100, Command: []string{"python3", "train.py", "--lr", "0.01"}}, 0)
				if err == nil {
					_, err = cl.CancelJob(ctx, j.ID)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("submit the jobs: %w", err)
	}
	host.Logf("%d jobs submitted and cancelled in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// logIn logs a browser-like client in with the password, as the login
// form does.
func logIn(ctx context.Context, cl *api.Client) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: host.TLSOf(cl), MaxIdleConnsPerHost: 4}
	web := &http.Client{Jar: jar, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"username": {benchAdmin}, "password": {password}}
	req, _ := http.NewRequestWithContext(ctx, "POST", cl.Server+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := web.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("log in: %s", resp.Status)
	}
	return web, nil
}

// serverTimes loads the job list runs times after one that is not counted.
func serverTimes(ctx context.Context, web *http.Client, base string, runs int) (*Dist, error) {
	var ms []float64
	for i := -1; i < runs; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/jobs", nil)
		t := time.Now()
		resp, err := web.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := float64(time.Since(t).Microseconds()) / 1000
		if resp.StatusCode != 200 || !strings.Contains(string(body), `id="jobs"`) {
			return nil, fmt.Errorf("GET /jobs: %s, without the list of jobs", resp.Status)
		}
		if i >= 0 {
			ms = append(ms, took)
		}
	}
	return newDist(ms), nil
}

// firstPaint logs Chromium in and loads the job list runs times, each time
// reading its first contentful paint.
func firstPaint(ctx context.Context, p *chromium.Page, base string, runs int) (*Dist, error) {
	if err := p.Navigate(ctx, base+"/"); err != nil {
		return nil, err
	}
	if _, err := p.Eval(ctx, fmt.Sprintf(`document.getElementById("username").value = %s; document.getElementById("password").value = %s; document.querySelector('form[action="/login"]').submit(); true`,
		chromium.JSString(benchAdmin), chromium.JSString(password))); err != nil {
		return nil, err
	}
	if err := p.Wait(ctx, 30*time.Second, `!!document.querySelector('form[action="/logout"]')`); err != nil {
		return nil, err
	}
	var ms []float64
	for i := -1; i < runs; i++ {
		if err := p.Navigate(ctx, base+"/jobs"); err != nil {
			return nil, err
		}
		paint := `performance.getEntriesByName("first-contentful-paint").length > 0`
		if err := p.Wait(ctx, 30*time.Second, paint); err != nil {
			return nil, err
		}
		v, err := p.Eval(ctx, `performance.getEntriesByName("first-contentful-paint")[0].startTime`)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("first paint: %q", v)
		}
		if i >= 0 {
			ms = append(ms, f)
		}
	}
	return newDist(ms), nil
}

// logLatency runs a job that prints the time (ms since the epoch) every
// 100 ms, follows its log on its page, and takes, for each line, the time
// the page received it less the time the job wrote it: the same machine's
// clock on both sides.
func logLatency(ctx context.Context, p *chromium.Page, cl *api.Client) (*Dist, error) {
	j, err := cl.SubmitJob(ctx, &dspool.JobSpec{Name: "ticker", CPUs: 100,
		Command: []string{"sh", "-c", "sleep 2; for i in $(seq 1 100); do date +%s%3N; sleep 0.1; done"}}, 0)
	if err != nil {
		return nil, err
	}
	if err := p.Navigate(ctx, cl.Server+"/jobs/"+j.Ref()); err != nil {
		return nil, err
	}
	// Lines that came before the observer are not counted.
	observe := `window.lat = []; new MutationObserver((ms) => { const now = Date.now(); for (const m of ms) for (const n of m.addedNodes) for (const l of n.textContent.split("\n")) if (/^\d{13}$/.test(l)) window.lat.push(now - Number(l)); }).observe(document.getElementById("log"), {childList: true}); true`
	if _, err := p.Eval(ctx, observe); err != nil {
		return nil, err
	}
	if err := p.Wait(ctx, 2*time.Minute, `document.getElementById("log").dataset.done === "true"`); err != nil {
		return nil, err
	}
	v, err := p.Eval(ctx, `window.lat`)
	if err != nil {
		return nil, err
	}
	var ms []float64
	if err := json.Unmarshal([]byte(v), &ms); err != nil || len(ms) < 50 {
		return nil, fmt.Errorf("log latencies: %d samples from %q, want about 100", len(ms), v)
	}
	return newDist(ms), nil
}

func report(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\ndspool web dashboard, %d cpus, load1 %.2f before and %.2f after", r.CPUs, r.Load1Before, r.Load1After)
	if r.Version != "" {
		fmt.Fprintf(w, " (%s)", r.Version)
	}
	fmt.Fprintf(w, "\n\n%-52s %6s %8s %8s %8s %10s\n", "MEASURE", "N", "P50 MS", "P99 MS", "MAX MS", "TARGET")
	row := func(name string, d *Dist, target float64, p99 bool) {
		if d == nil {
			return
		}
		got, verdict := d.P50, "met"
		if p99 {
			got = d.P99
		}
		if got > target {
			verdict = "NOT met"
		}
		which := "p50"
		if p99 {
			which = "p99"
		}
		fmt.Fprintf(w, "%-52s %6d %8.1f %8.1f %8.1f  %s<=%.0f %s\n", name, d.N, d.P50, d.P99, d.Max, which, target, verdict)
	}
	row(fmt.Sprintf("job list page, %d jobs of the user: server", r.Jobs), r.Server, targetServerP99, true)
	row("job list page: first contentful paint in Chromium", r.Paint, targetPaint, true)
	row("live log: a line from the job's write to the page", r.Log, targetLog, true)
}
