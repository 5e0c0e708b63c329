// Package local is the provider whose nodes are agent processes on this
// machine: `dspool up` uses it to run pools without any other machine. It
// starts and stops `dspool agent` processes; it never touches the store.
//
// A node is named <pool>-<i>, with the lowest i not in use, and keeps its
// state (its credential) under DataDir/agents/<name> while it exists, so an
// agent that exits by itself is restarted as the same node. Remove stops the
// agent and deletes that state: a later node of the same name joins afresh.
package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
	"github.com/dspool/dspool/internal/secretenv"
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
	// JoinToken returns the join token for a pool's new agents.
	JoinToken func(pool string) (string, error)
	// RestartDelay is the least time between two starts of an agent that
	// keeps exiting (default 2s).
	RestartDelay time.Duration
}

// Provider runs agent processes; it implements autoscale.Provider.
type Provider struct {
	opts    Options
	mu      sync.Mutex
	procs   map[string]*proc // by node name
	stopped bool
	wg      sync.WaitGroup
}

var _ autoscale.Provider = (*Provider)(nil)

type proc struct {
	pool, name string
	created    time.Time // when the node was first started
	started    time.Time // when this process was started
	cmd        *exec.Cmd
	done       chan struct{} // closed when this process has exited
	removing   bool          // Remove or Stop asked it to go: do not restart
	restarts   int
}

// New returns a provider with no agents.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RestartDelay == 0 {
		opts.RestartDelay = 2 * time.Second
	}
	return &Provider{opts: opts, procs: map[string]*proc{}}
}

// Grow starts n agents for pool.
func (p *Provider) Grow(ctx context.Context, pool *dspool.Pool, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	if p.opts.JoinToken == nil {
		return nil, fmt.Errorf("local provider: no join token source")
	}
	tok, err := p.opts.JoinToken(pool.Name)
	if err != nil {
		return nil, fmt.Errorf("join token for pool %s: %w", pool.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, fmt.Errorf("local provider: %w", autoscale.ErrStopping)
	}
	var names []string
	for i := 1; len(names) < n; i++ {
		if err := ctx.Err(); err != nil {
			return names, err
		}
		name := pool.Name + "-" + strconv.Itoa(i)
		if p.procs[name] != nil {
			continue
		}
		if err := p.start(name, pool, tok, nil); err != nil {
			return names, err
		}
		names = append(names, name)
	}
	return names, nil
}

// Resume starts agents for nodes that exist in the store from an earlier
// run (their state directories are kept), so a pool comes back as it was.
func (p *Provider) Resume(pool *dspool.Pool, names []string) error {
	tok, err := p.opts.JoinToken(pool.Name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range names {
		if p.procs[name] == nil {
			if err := p.start(name, pool, tok, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove stops the named agents (each stops its work: SIGTERM, then
// SIGKILL after its grace) and waits for them to exit, or for ctx.
func (p *Provider) Remove(ctx context.Context, pool *dspool.Pool, names []string) error {
	var wait []*proc
	p.mu.Lock()
	for _, name := range names {
		pr := p.procs[name]
		if pr == nil || pr.pool != pool.Name {
			continue
		}
		if !pr.removing {
			p.opts.Logger.Info("stopping local agent", "node", name)
			pr.removing = true
			_ = pr.cmd.Process.Signal(syscall.SIGTERM)
		}
		wait = append(wait, pr)
	}
	p.mu.Unlock()
	for _, pr := range wait {
		select {
		case <-pr.done:
		case <-ctx.Done():
			return fmt.Errorf("local agent %s has not exited yet: %w", pr.name, ctx.Err())
		}
	}
	return nil
}

// List returns the pool's agents, running or restarting.
func (p *Provider) List(_ context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []autoscale.Instance
	for _, pr := range p.procs {
		if pr.pool == pool.Name && !pr.removing {
			out = append(out, autoscale.Instance{Name: pr.name, Created: pr.created})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// start runs the agent called name; old is the process it replaces.
// p.mu is held.
func (p *Provider) start(name string, pool *dspool.Pool, token string, old *proc) error {
	dir := filepath.Join(p.opts.DataDir, "agents")
	state := filepath.Join(dir, name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"agent", "--server", p.opts.Server, "--pool", pool.Name, "--name", name,
		"--state", state, "--share", p.opts.Share,
		"--cpus", pool.Node.CPUs.String(), "--memory", strconv.FormatInt(int64(pool.Node.Memory), 10),
		"--gpus", strconv.Itoa(pool.Node.GPUs),
		// The pool comes back as it was when `dspool up` starts again.
		"--leave-on-stop=false"}
	args = append(args, p.opts.ExtraArgs...)
	cmd := exec.Command(p.opts.Exe, args...)
	// The token reaches the agent in a sealed memory file, never in its
	// environment block.
	tokf, err := secretenv.Pass(cmd, map[string]string{"DSPOOL_JOIN_TOKEN": token})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start local agent %s: %w", name, err)
	}
	defer tokf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so Ctrl-C reaches the agent through us, in
	// order; and it dies with us if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start local agent %s: %w", name, err)
	}
	now := time.Now()
	pr := &proc{pool: pool.Name, name: name, created: now, started: now, cmd: cmd, done: make(chan struct{})}
	if old != nil {
		pr.created, pr.restarts = old.created, old.restarts+1
	}
	p.procs[name] = pr
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = cmd.Wait()
		logf.Close()
		p.exited(pr, pool, token)
	}()
	return nil
}

// exited forgets a removed agent (and its state), or restarts one that
// exited by itself, no sooner than RestartDelay after its last start.
func (p *Provider) exited(pr *proc, pool *dspool.Pool, token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer close(pr.done)
	if p.procs[pr.name] != pr {
		return
	}
	if pr.removing || p.stopped {
		delete(p.procs, pr.name)
		if pr.removing && !p.stopped {
			_ = os.RemoveAll(filepath.Join(p.opts.DataDir, "agents", pr.name))
		}
		return
	}
	delay := p.opts.RestartDelay - time.Since(pr.started)
	p.opts.Logger.Warn("local agent exited; restarting it", "node", pr.name, "restarts", pr.restarts+1, "in", max(delay, 0).Round(time.Millisecond))
	p.wg.Add(1)
	time.AfterFunc(max(delay, 0), func() {
		defer p.wg.Done()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopped || p.procs[pr.name] != pr || pr.removing {
			if p.procs[pr.name] == pr {
				delete(p.procs, pr.name)
			}
			return
		}
		if err := p.start(pr.name, pool, token, pr); err != nil {
			p.opts.Logger.Error("restart local agent", "node", pr.name, "err", err)
			delete(p.procs, pr.name)
		}
	})
}

// Stop sends SIGTERM to every agent (each stops its jobs: SIGTERM, then
// SIGKILL after the grace period) and waits for them until ctx ends, then
// kills what is left. Their state is kept, for Resume.
func (p *Provider) Stop(ctx context.Context) {
	p.mu.Lock()
	p.stopped = true
	for _, pr := range p.procs {
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
