package main

import (
	"context"
	"fmt"
	"github.com/dspool/dspool/bench/internal/host"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Load is one throughput cell: conc clients, each sending GET url after
// GET url on its own keep-alive connection, for the cell's duration.
type Load struct {
	Path       string  `json:"path"` // under /user/NAME/
	Conc       int     `json:"concurrency"`
	Requests   int     `json:"requests"` // answered 200
	Errors     int     `json:"errors"`   // failed, or not 200
	FirstError string  `json:"first_error,omitempty"`
	Bytes      int     `json:"bytes"` // the body of one answer
	WallS      float64 `json:"wall_s"`
	ReqPerS    float64 `json:"req_per_s"` // Requests / WallS
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Error      string  `json:"error,omitempty"` // the cell failed: no figures
}

// loadClient is a keep-alive client with room for every client's
// connection, and no compression (none of the servers compresses these).
func loadClient(conc int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        max(64, 2*conc),
			MaxIdleConnsPerHost: max(64, 2*conc),
			MaxConnsPerHost:     0,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// hammer measures one cell. Each client first sends one untimed request
// (which opens its connection); then all send for d.
func hammer(ctx context.Context, url string, hdr http.Header, path string, conc int, d time.Duration) *Load {
	l := &Load{Path: path, Conc: conc}
	hc := loadClient(conc)
	defer hc.CloseIdleConnections()
	get := func() (int, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return 0, err
		}
		req.Header = hdr.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: %s", url, resp.Status)
		}
		return int(n), nil
	}
	var wg sync.WaitGroup
	warm := make([]error, conc)
	for i := range conc {
		wg.Go(func() { l.Bytes, warm[i] = get() })
	}
	wg.Wait()
	for _, err := range warm {
		if err != nil {
			l.Error = "first request: " + err.Error()
			return l
		}
	}
	var mu sync.Mutex
	var lat []float64
	t0 := time.Now()
	end := t0.Add(d)
	for range conc {
		wg.Go(func() {
			var mine []float64
			var errs int
			var first error
			for time.Now().Before(end) && ctx.Err() == nil {
				s := time.Now()
				if _, err := get(); err != nil {
					errs++
					if first == nil {
						first = err
					}
					time.Sleep(10 * time.Millisecond) // no busy loop on a dead server
					continue
				}
				mine = append(mine, float64(time.Since(s).Microseconds())/1000)
			}
			mu.Lock()
			lat = append(lat, mine...)
			l.Errors += errs
			if first != nil && l.FirstError == "" {
				l.FirstError = first.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	l.WallS = time.Since(t0).Seconds()
	if ctx.Err() != nil {
		l.Error = ctx.Err().Error()
		return l
	}
	if len(lat) == 0 {
		l.Error = "no request answered 200: " + l.FirstError
		return l
	}
	l.Requests = len(lat)
	l.ReqPerS = float64(l.Requests) / l.WallS
	s := slices.Sorted(slices.Values(lat))
	l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs = pct(s, 50), pct(s, 90), pct(s, 99), s[len(s)-1]
	return l
}

// cells measures every path and concurrency against each of the targets
// (named base URLs with their headers), the targets one after another
// within each cell so that whatever else the machine does falls alike on
// them. It returns one []*Load per target.
func cells(ctx context.Context, n Sizes, user string, targets []target) [][]*Load {
	out := make([][]*Load, len(targets))
	for _, p := range n.Paths {
		for _, c := range n.Concurrency {
			for i, t := range targets {
				if ctx.Err() != nil {
					return out
				}
				l := hammer(ctx, t.base+"/user/"+user+"/"+p, t.hdr, p, c, n.Duration)
				out[i] = append(out[i], l)
				if l.Error != "" {
					host.Logf("%s: GET %s c=%d: %s", t.name, p, c, l.Error)
				} else {
					host.Logf("%s: GET %s c=%d: %.0f req/s, p50 %.2f p90 %.2f ms, %d errors", t.name, p, c, l.ReqPerS, l.P50Ms, l.P90Ms, l.Errors)
				}
			}
		}
	}
	return out
}

type target struct {
	name string
	base string // http://127.0.0.1:PORT
	hdr  http.Header
}

// proc is a process this program started and stops by its PID (or its
// process group, which it leads).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process (to its group with group), then SIGKILL
// after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration, group bool) {
	if p == nil || p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	if group {
		pid = -pid
	}
	_ = syscall.Kill(pid, sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		host.Logf("%s did not stop within %s: killing it", p.name, grace)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-p.done
	}
}

// stopPID stops a process this program did not start (JupyterHub's
// children) by its PID: SIGTERM, SIGKILL after grace. It does nothing
// unless the PID still runs a command line containing name (a PID may
// have been reused).
func stopPID(pid int, name string, grace time.Duration) {
	if pid <= 0 || !runs(pid, name) {
		return
	}
	host.Logf("stopping %s (pid %d)", name, pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for runs(pid, name) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runs reports whether pid is a live process (not a zombie) whose command
// line contains name.
func runs(pid int, name string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), name) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}
