// Package local is the provider whose nodes are agent processes on this
// machine: `dspool up` uses it to run a pool without any other machine. It
// starts and stops `dspool agent` processes; it never touches the store.
package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
)

// Options configures a Provider.
type Options struct {
	Exe     string // the dspool binary
	Server  string // URL the agents dial
	DataDir string // agents keep their state and logs under DataDir/agents
	Share   string
	Logger  *slog.Logger
	// ExtraArgs are appended to every agent's command line.
	ExtraArgs []string
	// Removed is called after an agent that Reconcile stopped (its pool
	// shrank) has exited, so its node can be retired.
	Removed func(pool, name string)
}

// Provider keeps, for each local pool, Count agent processes running.
type Provider struct {
	opts  Options
	mu    sync.Mutex
	procs map[string]*proc // by node name: <pool>-<i>
	wg    sync.WaitGroup
}

type proc struct {
	pool, name string
	cmd        *exec.Cmd
	done       chan struct{}
	stopping   bool
	surplus    bool // stopped because its pool shrank
	restarts   int
	lastStart  time.Time
}

// New returns a provider; nothing starts until Reconcile.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Provider{opts: opts, procs: map[string]*proc{}}
}

// Reconcile starts missing agents and stops surplus ones so each local pool
// has Count agents; joinToken gives the token for a pool's new agents.
// Agents that exited on their own are restarted, no faster than every 2s.
func (p *Provider) Reconcile(pools []*dspool.Pool, joinToken func(pool string) (string, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]*dspool.Pool{}
	for _, pool := range pools {
		if pool.Provider != dspool.ProviderLocal {
			continue
		}
		for i := 1; i <= pool.Count; i++ {
			want[fmt.Sprintf("%s-%d", pool.Name, i)] = pool
		}
	}
	for name, pr := range p.procs {
		if want[name] == nil && !pr.stopping {
			p.opts.Logger.Info("stopping local agent", "node", name)
			pr.stopping, pr.surplus = true, true
			_ = pr.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	var firstErr error
	for name, pool := range want {
		pr := p.procs[name]
		if pr != nil {
			select {
			case <-pr.done:
				if time.Since(pr.lastStart) < 2*time.Second {
					continue
				}
			default:
				continue
			}
		}
		tok, err := joinToken(pool.Name)
		if err != nil {
			firstErr = err
			continue
		}
		if err := p.start(name, pool, tok); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (p *Provider) start(name string, pool *dspool.Pool, token string) error {
	state := filepath.Join(p.opts.DataDir, "agents", name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(p.opts.DataDir, "agents", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"agent", "--server", p.opts.Server, "--pool", pool.Name, "--name", name,
		"--state", state, "--share", p.opts.Share,
		"--cpus", pool.Node.CPUs.String(), "--memory", strconv.FormatInt(int64(pool.Node.Memory), 10),
		"--gpus", strconv.Itoa(pool.Node.GPUs)}
	args = append(args, p.opts.ExtraArgs...)
	cmd := exec.Command(p.opts.Exe, args...)
	cmd.Env = append(os.Environ(), "DSPOOL_JOIN_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so Ctrl-C reaches the agent through us, in
	// order; and it dies with us if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start local agent %s: %w", name, err)
	}
	pr := &proc{pool: pool.Name, name: name, cmd: cmd, done: make(chan struct{}), lastStart: time.Now()}
	if old := p.procs[name]; old != nil {
		pr.restarts = old.restarts + 1
		p.opts.Logger.Warn("local agent exited; restarted", "node", name, "restarts", pr.restarts)
	}
	p.procs[name] = pr
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = cmd.Wait()
		logf.Close()
		close(pr.done)
		p.mu.Lock()
		if pr.stopping && p.procs[name] == pr {
			delete(p.procs, name)
		}
		surplus := pr.surplus
		p.mu.Unlock()
		if surplus && p.opts.Removed != nil {
			p.opts.Removed(pr.pool, name)
		}
	}()
	return nil
}

// Wanted reports whether name is an agent the provider keeps or is still
// stopping: a node by any other name in a local pool is a stray (a pool that
// shrank while no one ran it).
func (p *Provider) Wanted(pool *dspool.Pool, name string) bool {
	p.mu.Lock()
	_, managed := p.procs[name]
	p.mu.Unlock()
	if managed {
		return true
	}
	for i := 1; i <= pool.Count; i++ {
		if name == fmt.Sprintf("%s-%d", pool.Name, i) {
			return true
		}
	}
	return false
}

// Stop sends SIGTERM to every agent (each stops its jobs: SIGTERM, then
// SIGKILL after the grace period) and waits for them until ctx ends, then
// kills what is left.
func (p *Provider) Stop(ctx context.Context) {
	p.mu.Lock()
	for _, pr := range p.procs {
		pr.stopping = true
		_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.mu.Lock()
		for _, pr := range p.procs {
			_ = pr.cmd.Process.Kill()
		}
		p.mu.Unlock()
		<-done
	}
}
