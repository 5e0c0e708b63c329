// Package local is the provider whose nodes are agent processes on this
// machine: `dspool up` uses it to run pools without any other machine. It
// starts and stops `dspool agent` processes; it never touches the store.
//
// A node is named <pool>-<i>, with the lowest i not in use, and keeps its
// state (its credential) under DataDir/agents/<name> while it exists, so an
// agent that exits by itself is restarted as the same node. Remove stops the
// agent and deletes that state: a later node of the same name joins afresh.
//
// Agents outlive the provider's process unless Stop stops them: a `dspool
// up` that crashes leaves them running with their work, and the next one
// adopts each (adopt.go) instead of starting a second agent for its node.
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
	"github.com/dspool/dspool/internal/agentlock"
	"github.com/dspool/dspool/internal/secretenv"
	"golang.org/x/sys/unix"
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
	// AdoptWait is how long a start waits for an agent that holds its
	// state directory's lock to record itself, before it starts one anyway
	// (which the lock refuses while the other runs; default 15s).
	AdoptWait time.Duration
	// Started is for tests alone: called right after an agent has started,
	// before anything is recorded of it, where a crash of this process
	// leaves an agent that only its lock tells of. True makes the start
	// end there, the agent running and forgotten, as if this process had
	// died.
	Started func(name string, pid int) bool
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
	created    time.Time // when the node was first started (or adopted)
	started    time.Time // when this process was started (or adopted)
	pid        int
	cmd        *exec.Cmd // nil for an agent adopted from an earlier run
	// pidfd refers to an adopted agent until it has exited (-1 then):
	// signals go through it, never by pid.
	pidfd    int
	done     chan struct{} // closed when this process has exited
	removing bool          // Remove or Stop asked it to go: do not restart
	restarts int
}

// signal sends sig to the agent. p.mu is held.
func (pr *proc) signal(sig syscall.Signal) {
	if pr.cmd != nil {
		_ = pr.cmd.Process.Signal(sig)
	} else if pr.pidfd >= 0 {
		_ = unix.PidfdSendSignal(pr.pidfd, sig, nil, 0)
	}
}

// New returns a provider with no agents.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RestartDelay == 0 {
		opts.RestartDelay = 2 * time.Second
	}
	if opts.AdoptWait == 0 {
		opts.AdoptWait = 15 * time.Second
	}
	return &Provider{opts: opts, procs: map[string]*proc{}}
}

// Grow starts an agent for each join asked for. Local agents join with the
// pool's own token from Options.JoinToken rather than the request's
// single-use ones: an agent that exits before it has kept its credential
// is started again, and must still be able to join.
func (p *Provider) Grow(ctx context.Context, req autoscale.GrowRequest) ([]string, error) {
	pool, n := req.Pool, req.N()
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
// run (their state directories are kept), so a pool comes back as it was;
// an agent of that run still running for its node is adopted instead.
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
			pr.signal(syscall.SIGTERM)
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

// start runs the agent called name, or adopts the one an earlier run left
// running for it; old is the process it replaces. p.mu is held.
func (p *Provider) start(name string, pool *dspool.Pool, token string, old *proc) error {
	dir := filepath.Join(p.opts.DataDir, "agents")
	state := filepath.Join(dir, name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	args := []string{"agent", "--server", p.opts.Server, "--pool", pool.Name, "--name", name,
		"--state", state, "--share", p.opts.Share,
		"--cpus", pool.Node.CPUs.String(), "--memory", strconv.FormatInt(int64(pool.Node.Memory), 10),
		"--gpus", strconv.Itoa(pool.Node.GPUs),
		// The pool comes back as it was when `dspool up` starts again.
		"--leave-on-stop=false"}
	args = append(args, p.opts.ExtraArgs...)
	// The agent an earlier run left, or the lock for the one started
	// here: the lock is held from before the fork, and the agent keeps it,
	// so that a run that dies before it has recorded the agent leaves the
	// next run an agent it finds, never one it cannot see.
	live, lock, err := findOrLock(state, args, p.opts.AdoptWait)
	if err != nil {
		p.opts.Logger.Warn("cannot tell whether an agent of an earlier run still runs for this node; starting one", "node", name, "err", err)
	}
	if live != nil {
		p.adopt(name, pool, token, live)
		return nil
	}
	if lock != nil {
		// Ours closes once the agent has started: the lock is the
		// agent's from then on.
		defer lock.Close()
	}
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.opts.Exe, args...)
	if lock != nil {
		agentlock.HandOver(cmd, lock)
	}
	// The token reaches the agent in a sealed memory file, never in its
	// environment block.
	tokf, err := secretenv.Pass(cmd, map[string]string{"DSPOOL_JOIN_TOKEN": token})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start local agent %s: %w", name, err)
	}
	defer tokf.Close()
	// Output to a file, input from /dev/null, and a session of its own:
	// no pipe that breaks, no terminal that hangs up and no Ctrl-C reaches
	// it when we go. It outlives us if we crash or are killed, with its
	// work, for the next run to adopt; Stop stops it on purpose.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start local agent %s: %w", name, err)
	}
	if p.opts.Started != nil && p.opts.Started(name, cmd.Process.Pid) {
		logf.Close()
		return nil
	}
	if err := recordAgent(state, cmd.Process.Pid); err != nil {
		p.opts.Logger.Warn("no pid file for the local agent: should this process crash, the next run cannot adopt it", "node", name, "err", err)
	}
	now := time.Now()
	pr := &proc{pool: pool.Name, name: name, created: now, started: now, pid: cmd.Process.Pid, cmd: cmd, pidfd: -1, done: make(chan struct{})}
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

// adopt watches the agent an earlier run left running for node name as if
// it had started it: it restarts the agent when it exits by itself, and
// stops it with the others. An agent started with other arguments (another
// server address, another node size) is replaced: stopped, with its work,
// and started again as now configured. p.mu is held.
func (p *Provider) adopt(name string, pool *dspool.Pool, token string, live *liveAgent) {
	now := time.Now()
	pr := &proc{pool: pool.Name, name: name, created: now, started: now, pid: live.pid, pidfd: live.pidfd, done: make(chan struct{})}
	p.procs[name] = pr
	if live.same {
		p.opts.Logger.Info("adopted the local agent of an earlier run", "node", name, "pid", live.pid)
	} else {
		p.opts.Logger.Warn("the local agent of an earlier run was started with other settings: replacing it, which stops its work", "node", name, "pid", live.pid)
		pr.signal(syscall.SIGTERM)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		waitPidfd(live.pidfd)
		p.mu.Lock()
		unix.Close(pr.pidfd)
		pr.pidfd = -1
		p.mu.Unlock()
		p.exited(pr, pool, token)
	}()
}

// StopStrays stops the agents that an earlier run left running for nodes
// that no pool claims now (Resume adopts the others), and waits for them
// until ctx ends, then kills them. Call it after Resume.
func (p *Provider) StopStrays(ctx context.Context) {
	dir := filepath.Join(p.opts.DataDir, "agents")
	entries, _ := os.ReadDir(dir)
	var strays []*liveAgent
	p.mu.Lock()
	for _, e := range entries {
		if !e.IsDir() || p.procs[e.Name()] != nil {
			continue
		}
		live, lock, err := findOrLock(filepath.Join(dir, e.Name()), nil, p.opts.AdoptWait)
		if lock != nil {
			lock.Close() // no agent runs there
		}
		if err != nil {
			p.opts.Logger.Warn("cannot tell whether an agent of an earlier run still runs", "node", e.Name(), "err", err)
		}
		if live == nil {
			continue
		}
		p.opts.Logger.Warn("stopping a local agent of an earlier run whose node is in no pool now", "node", e.Name(), "pid", live.pid)
		_ = unix.PidfdSendSignal(live.pidfd, syscall.SIGTERM, nil, 0)
		strays = append(strays, live)
	}
	p.mu.Unlock()
	for _, s := range strays {
		exited := make(chan struct{})
		go func() { waitPidfd(s.pidfd); close(exited) }()
		select {
		case <-exited:
		case <-ctx.Done():
			_ = unix.PidfdSendSignal(s.pidfd, syscall.SIGKILL, nil, 0)
			<-exited
		}
		unix.Close(s.pidfd)
	}
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
	// Whoever starts the node's agent next writes its own.
	_ = os.Remove(filepath.Join(p.opts.DataDir, "agents", pr.name, pidFileName))
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
		pr.signal(syscall.SIGTERM)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.mu.Lock()
		for _, pr := range p.procs {
			pr.signal(syscall.SIGKILL)
		}
		p.mu.Unlock()
		<-done
	}
}
