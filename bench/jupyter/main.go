// Command jupyter measures the browser/Jupyter path: from a login to a
// Jupyter server that answers, and requests through dspool's proxy
// (/user/NAME/) beside the same jupyter_server reached directly; and, in the
// same run, JupyterHub 3.0 with configurable-http-proxy (Debian's packages)
// on this machine, through its proxy and directly. See bench/README.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

const (
	benchAdmin = "dspooljbench" // the admin `dspool up` creates
	benchUser  = "jbench1"      // dspool's user whose Jupyter server is measured
	hubUser    = "jhbench1"     // JupyterHub's user: a real Unix account (useradd)
	python     = "/usr/bin/python3"
	// staticPath is a static file of jupyter_server 1.23 (1150 bytes), under
	// /user/NAME/; "api" is its version JSON (21 bytes).
	staticPath = "static/favicons/favicon-file.ico"
	// pollEvery is how often both sides' start is polled (the status API,
	// then the first request through the proxy).
	pollEvery = 20 * time.Millisecond
)

// concurrencies are the clients of each throughput cell; paths the URLs
// (under /user/NAME/) each is measured for.
var (
	concurrencies = []int{1, 16}
	paths         = []string{"api", staticPath}
)

// Sizes are how much each measurement does.
type Sizes struct {
	Runs        int           `json:"runs"` // login -> server ready, per side
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s"` // each throughput cell
	Concurrency []int         `json:"concurrency"`
	Paths       []string      `json:"paths"`
}

// Side is what was measured on one system: dspool, or JupyterHub.
type Side struct {
	Name     string     `json:"name"`
	Error    string     `json:"error,omitempty"` // why figures are missing
	Versions string     `json:"versions,omitempty"`
	Server   string     `json:"server,omitempty"` // the single-user server's /api answer
	Login    *Dist      `json:"login_to_first_200_s,omitempty"`
	Ready    *Dist      `json:"login_to_state_ready_s,omitempty"` // dspool: its API says ready
	LoggedIn *Dist      `json:"login_post_s,omitempty"`           // the login itself (dspool: POST /login and the page)
	Bare     *Dist      `json:"bare_start_s,omitempty"`           // the direct server: start -> answers
	Stop     *Dist      `json:"stop_s,omitempty"`                 // DELETE -> the API says stopped
	Proxy    []*Load    `json:"proxy,omitempty"`                  // through dspool's proxy, or CHP
	Direct   []*Load    `json:"direct,omitempty"`                 // the single-user server itself
	DirectTo string     `json:"direct_to,omitempty"`              // its address
	Load1    [2]float64 `json:"load1"`                            // before and after the side
	Notes    []string   `json:"notes,omitempty"`
}

// Dist is a set of samples in seconds with nearest-rank percentiles.
type Dist struct {
	Samples []float64 `json:"samples"`
	P50     float64   `json:"p50"`
	P90     float64   `json:"p90"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
}

func newDist(samples []float64) *Dist {
	if len(samples) == 0 {
		return nil
	}
	s := slices.Sorted(slices.Values(samples))
	return &Dist{Samples: samples, P50: host.Pct(s, 50), P90: host.Pct(s, 90), Min: s[0], Max: s[len(s)-1]}
}

// Results is everything a run measured.
type Results struct {
	Sizes  Sizes    `json:"sizes"`
	CPUs   int      `json:"cpus"`
	Dspool *Side    `json:"dspool,omitempty"`
	Hub    *Side    `json:"jupyterhub,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

func main() {
	short := flag.Bool("short", false, "small sizes: a quick check that everything works")
	runs := flag.Int("runs", 0, "login -> server ready samples per side (default 10, -short 3)")
	dur := flag.Duration("duration", 0, "each throughput cell (default 10s, -short 2s)")
	bin := flag.String("dspool", "", "dspool binary to measure (default: build ./cmd/dspool)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	noDspool := flag.Bool("no-dspool", false, "do not measure dspool")
	noPeer := flag.Bool("no-peer", false, "do not measure JupyterHub")
	keep := flag.Bool("keep", false, "keep the temporary directory (dspool's data and log up.log, the hub's config and log)")
	flag.Parse()
	n := Sizes{Runs: 10, Duration: 10 * time.Second, Concurrency: concurrencies, Paths: paths}
	if *short {
		n.Runs, n.Duration = 3, 2*time.Second
	}
	if *runs > 0 {
		n.Runs = *runs
	}
	if *dur > 0 {
		n.Duration = *dur
	}
	n.DurationS = n.Duration.Seconds()
	if flag.NArg() > 0 || *runs < 0 || *dur < 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// With stderr piped into e.g. head, a write to it must fail rather
	// than kill the program before it has stopped its servers and removed
	// its users.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if err := run(ctx, n, *bin, *jsonOut, *noDspool, *noPeer, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n Sizes, bin, jsonOut string, noDspool, noPeer, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("run it as root: it runs Jupyter servers as their users and creates a user for JupyterHub")
	}
	if _, err := os.Stat(python); err != nil {
		return fmt.Errorf("no %s: install Debian's Jupyter server with `apt-get install -y python3-jupyter-server`", python)
	}
	tmp, done, err := host.TempDir("dspool-jupyter-bench-", keep)
	if err != nil {
		return err
	}
	defer done()
	r := &Results{Sizes: n, CPUs: runtime.NumCPU()}
	if noDspool {
		r.Notes = append(r.Notes, "dspool: skipped (-no-dspool)")
	} else {
		r.Dspool = benchDspool(ctx, bin, tmp, n)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if noPeer {
		r.Notes = append(r.Notes, "jupyterhub: skipped (-no-peer)")
	} else {
		r.Hub = benchHub(ctx, tmp, n)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := report(os.Stdout, jsonOut, r); err != nil {
		return err
	}
	// A figure missing from dspool's side is a failure of the run; the
	// peer may be absent.
	if d := r.Dspool; d != nil {
		if d.Error != "" {
			return fmt.Errorf("dspool: %s", d.Error)
		}
		for _, l := range append(slices.Clone(d.Proxy), d.Direct...) {
			if l.Error != "" {
				return fmt.Errorf("dspool, %s c=%d: %s", l.Path, l.Conc, l.Error)
			}
		}
	}
	return nil
}

// secret is a new random hex string of n bytes.
func secret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
