package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// Load is one throughput cell: conc clients, each sending GET url after
// GET url on its own keep-alive connection, for the cell's duration.
type Load struct {
	Path      string `json:"path"` // under /user/NAME/
	Conc      int    `json:"concurrency"`
	host.Load        // requests are the answers 200
	Bytes     int    `json:"bytes"`           // the body of one answer
	Error     string `json:"error,omitempty"` // the cell failed: no figures
}

// hammer measures one cell. Each client first sends one untimed request
// (which opens its connection); then all send for d.
func hammer(ctx context.Context, url string, hdr http.Header, path string, conc int, d time.Duration) *Load {
	l := &Load{Path: path, Conc: conc}
	hc := host.LoadClient(conc, nil) // plain HTTP on loopback, as the peers
	defer hc.CloseIdleConnections()
	var bytes atomic.Int64
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		req.Header = hdr.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		bytes.Store(n)
		return nil
	}
	load, err := host.Hammer(ctx, conc, d, get)
	l.Load, l.Bytes = load, int(bytes.Load())
	if err != nil {
		l.Error = err.Error()
	}
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
