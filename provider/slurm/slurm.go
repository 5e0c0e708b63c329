// Package slurm is the provider whose nodes are Slurm allocations, for
// teams whose machines are already under Slurm: a node is a batch job
// (sbatch) that runs `dspool agent` for as long as the pool needs it, and
// scale-in is scancel of that job. It talks to Slurm only through its
// command-line tools, as the control plane's user; it never touches the
// store, and it never puts a join token on a command line (the token
// reaches the job in its environment, which sbatch passes on).
package slurm

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/autoscale"
)

// Options configures a Provider.
type Options struct {
	// Exe and Share are the defaults of a pool's dspool and share
	// settings.
	Exe, Share string
	// Bin is the directory of sbatch, squeue and scancel ("": PATH).
	Bin string
	// Env is added to the environment of the Slurm commands (SLURM_CONF
	// in tests); the control plane's own PATH, HOME, USER and SLURM_*
	// variables are passed on.
	Env    []string
	Logger *slog.Logger
	// Timeout bounds one Slurm command (default 30s): sbatch retries for
	// minutes while slurmctld does not answer, and the autoscaler's pass
	// waits for it.
	Timeout time.Duration
}

// Provider runs a pool's nodes as Slurm jobs; it implements
// autoscale.Provider.
type Provider struct {
	opts Options

	mu     sync.Mutex
	jobs   map[string]string    // node name -> job id, as last seen
	failed map[string]failedJob // job id -> why it failed, asked once

	sbatch, squeue, scancel, scontrol atomic.Int64
}

var _ autoscale.Provider = (*Provider)(nil)

// New returns a provider.
func New(opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Provider{opts: opts, jobs: map[string]string{}, failed: map[string]failedJob{}}
}

// Calls returns how many times each Slurm command ran.
func (p *Provider) Calls() map[string]int64 {
	return map[string]int64{"sbatch": p.sbatch.Load(), "squeue": p.squeue.Load(), "scancel": p.scancel.Load(), "scontrol": p.scontrol.Load()}
}

// jobName is the Slurm job name of node name of pool: pool names have no
// dot, so one pool's jobs never match another's.
func jobName(pool, name string) string { return "dspool." + pool + "." + name }

// Grow submits one batch job per join.
func (p *Provider) Grow(ctx context.Context, req autoscale.GrowRequest) ([]string, error) {
	if req.N() == 0 {
		return nil, nil
	}
	var s Settings
	if err := autoscale.DecodeSettings(req.Pool, &s); err != nil {
		return nil, fmt.Errorf("slurm settings of pool %s: %w", req.Pool.Name, err)
	}
	if s.Dspool == "" {
		s.Dspool = p.opts.Exe
	}
	if s.Share == "" {
		s.Share = p.opts.Share
	}
	var names []string
	for _, j := range req.Joins {
		name := autoscale.NodeName(req.Pool.Name)
		id, err := p.submit(ctx, req.Pool, &s, name, j)
		if err != nil {
			return names, err
		}
		p.mu.Lock()
		p.jobs[name] = id
		p.mu.Unlock()
		names = append(names, name)
	}
	return names, nil
}

// script is the batch script of node name: it runs the agent in the
// allocation's place, so that scancel (or the time limit) stops the agent,
// which leaves the pool at once. It holds no secret.
func script(pool *dspool.Pool, s *Settings, name, server string) string {
	args := []string{s.Dspool, "agent", "--server", server, "--name", name, "--pool", pool.Name,
		"--share", s.Share, "--state", filepath.Join(s.State, name),
		"--cpus", strconv.FormatInt(int64(pool.Node.CPUs/1000), 10), "--memory", strconv.FormatInt(int64(pool.Node.Memory), 10),
		"--gpus", strconv.Itoa(pool.Node.GPUs)}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# node %s of dspool pool %s: the agent runs for as long as the pool needs the node.\n", name, pool.Name)
	fmt.Fprintf(&b, "[ -x %s ] || { echo \"dspool: not on $(hostname):\" %s >&2; exit 127; }\n", quote(s.Dspool), quote(s.Dspool))
	b.WriteString("exec")
	for _, a := range args {
		b.WriteString(" " + quote(a))
	}
	b.WriteString("\n")
	return b.String()
}

// quote quotes s for /bin/sh.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (p *Provider) submit(ctx context.Context, pool *dspool.Pool, s *Settings, name string, j autoscale.Join) (string, error) {
	args := []string{"--parsable", "--job-name=" + jobName(pool.Name, name), "--nodes=1", "--ntasks=1",
		"--cpus-per-task=" + strconv.FormatInt(int64(pool.Node.CPUs/1000), 10),
		fmt.Sprintf("--mem=%dM", (int64(pool.Node.Memory)+(1<<20)-1)>>20),
		"--output=" + filepath.Join(s.Logs, "dspool-"+name+"-%j.log"), "--chdir=/tmp",
		// The environment sbatch runs with is the job's: the token goes
		// there, never on a command line.
		"--export=ALL"}
	if pool.Node.GPUs > 0 {
		args = append(args, "--gres=gpu:"+strconv.Itoa(pool.Node.GPUs))
	}
	for _, o := range []struct{ flag, v string }{{"--partition=", s.Partition}, {"--account=", s.Account}, {"--qos=", s.QOS}, {"--constraint=", s.Constraint}} {
		if o.v != "" {
			args = append(args, o.flag+o.v)
		}
	}
	if s.Time != "" {
		m, _ := minutes(s.Time)
		args = append(args, "--time="+strconv.Itoa(m))
	}
	args = append(args, s.Options...)
	cmd, cancel := p.command(ctx, "sbatch", args...)
	defer cancel()
	cmd.Env = append(cmd.Env, "DSPOOL_JOIN_TOKEN="+j.Token)
	cmd.Stdin = strings.NewReader(script(pool, s, name, j.Server))
	p.sbatch.Add(1)
	out, err := run(cmd)
	if err != nil {
		return "", sbatchError(err)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";") // "ID;CLUSTER" on a federation
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", &autoscale.Error{Class: autoscale.ClassOther, Engine: "slurm", Message: fmt.Sprintf("sbatch answered %q, not a job id", out)}
	}
	p.opts.Logger.Info("slurm: submitted a node", "pool", pool.Name, "node", name, "job", id)
	return id, nil
}

// command makes a Slurm command with the control plane's Slurm
// environment and nothing else of it; it is killed after the timeout.
func (p *Provider) command(ctx context.Context, name string, args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	bin := name
	if p.opts.Bin != "" {
		bin = filepath.Join(p.opts.Bin, name)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || k == "USER" || k == "LOGNAME" || k == "LANG" || strings.HasPrefix(k, "SLURM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, p.opts.Env...)
	return cmd, cancel
}

// commandError is a Slurm command that failed, with what it said.
type commandError struct {
	err    error
	stderr string
}

func (e *commandError) Error() string {
	if e.stderr != "" {
		return e.stderr
	}
	return e.err.Error()
}

func (e *commandError) Unwrap() error { return e.err }

func run(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 1000 {
			msg = msg[:1000] + "..."
		}
		return "", &commandError{err: err, stderr: msg}
	}
	return stdout.String(), nil
}

// sbatchError classes what sbatch said, keeping its words.
func sbatchError(err error) error {
	msg := err.Error()
	class := autoscale.ClassOther
	var ee *exec.Error
	switch {
	case errors.As(err, &ee):
		msg = fmt.Sprintf("cannot run sbatch (%v): install Slurm's client commands on the control plane's machine", ee.Err)
	case containsAny(msg, "QOSMax", "AssocMax", "AssocGrp", "QOSGrp", "MaxSubmit", "accounting/QOS policy", "Invalid account", "Invalid qos", "user's group not permitted"):
		class = autoscale.ClassQuota
	case containsAny(msg, "Invalid partition", "Requested node configuration is not available", "Node count specification invalid",
		"More processors requested than permitted", "Memory required by task is not available", "Invalid generic resource",
		"Invalid feature specification", "Requested time limit is invalid", "Requested partition configuration not available"):
		class = autoscale.ClassUnschedulable
	case containsAny(msg, "Resource temporarily unavailable", "Slurm temporarily unable", "ESLURM_NODES_BUSY"):
		class = autoscale.ClassCapacity
	}
	return &autoscale.Error{Class: class, Engine: "slurm", Message: msg, Err: err}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// List lists the pool's jobs: pending and starting ones as creating (with
// Slurm's pending reason), running ones as running, and those that failed
// (which Slurm shows for MinJobAge) as failed. Cancelled, completed and
// timed-out jobs are gone.
func (p *Provider) List(ctx context.Context, pool *dspool.Pool) ([]autoscale.Instance, error) {
	jobs, err := p.queue(ctx, pool.Name)
	if err != nil {
		return nil, err
	}
	var out []autoscale.Instance
	seen := map[string]string{}
	for _, j := range jobs {
		in := autoscale.Instance{Name: j.name, Created: j.submitted}
		switch j.state {
		case "PENDING", "CONFIGURING", "REQUEUED", "RESV_DEL_HOLD", "REQUEUE_FED", "REQUEUE_HOLD", "SUSPENDED":
			in.State = autoscale.InstanceCreating
			in.Err = pendingError(j)
		case "RUNNING", "STAGE_OUT", "SIGNALING", "RESIZING":
			in.State = autoscale.InstanceRunning
		case "FAILED", "BOOT_FAIL", "NODE_FAIL", "OUT_OF_MEMORY":
			in.State = autoscale.InstanceFailed
			in.Err = p.failure(ctx, pool, j)
		default: // COMPLETING (leaving), CANCELLED, COMPLETED, TIMEOUT, PREEMPTED, ...
			continue
		}
		seen[j.name] = j.id
		out = append(out, in)
	}
	p.mu.Lock()
	for name := range p.jobs {
		if strings.HasPrefix(name, pool.Name+"-") {
			if _, ok := seen[name]; !ok {
				delete(p.jobs, name)
			}
		}
	}
	for name, id := range seen {
		p.jobs[name] = id
	}
	shown := map[string]bool{}
	for _, j := range jobs {
		shown[j.id] = true
	}
	for id, f := range p.failed {
		if f.pool == pool.Name && !shown[id] {
			delete(p.failed, id)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b autoscale.Instance) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

type job struct {
	id, name, state, reason, partition, nodes string
	submitted                                 time.Time
}

// queue lists this user's jobs of pool, in every state Slurm still shows.
func (p *Provider) queue(ctx context.Context, pool string) ([]job, error) {
	cmd, cancel := p.command(ctx, "squeue", "--me", "--noheader", "--states=all", "--format=%i|%j|%T|%r|%V|%P|%N")
	defer cancel()
	p.squeue.Add(1)
	out, err := run(cmd)
	if err != nil {
		return nil, &autoscale.Error{Class: autoscale.ClassOther, Engine: "slurm", Message: "squeue: " + err.Error(), Err: err}
	}
	prefix := "dspool." + pool + "."
	var jobs []job
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) != 7 || !strings.HasPrefix(f[1], prefix) {
			continue
		}
		j := job{id: f[0], name: strings.TrimPrefix(f[1], prefix), state: f[2], reason: f[3], partition: f[5], nodes: f[6]}
		j.submitted, _ = time.ParseInLocation("2006-01-02T15:04:05", f[4], time.Local)
		if j.submitted.IsZero() {
			j.submitted = time.Now()
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// pendingError says why a job waits, in Slurm's words, classed.
func pendingError(j job) *autoscale.Error {
	class := autoscale.ClassCapacity
	switch r := j.reason; {
	case strings.Contains(r, "QOS") || strings.Contains(r, "Assoc"):
		class = autoscale.ClassQuota
	case containsAny(r, "PartitionDown", "PartitionInactive", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
		"ReqNodeNotAvail", "JobHeldAdmin", "InvalidAccount", "InvalidQOS", "NodeDown"):
		class = autoscale.ClassUnschedulable
	}
	reason := j.reason
	if reason == "" || reason == "None" {
		reason = "queued"
	}
	return &autoscale.Error{Class: class, Engine: "slurm", Message: fmt.Sprintf("job %s pending in partition %s: %s", j.id, j.partition, reason)}
}

// failure says why a job failed; an exit status of 127 from its script
// means the dspool binary is not on the node.
func (p *Provider) failure(ctx context.Context, pool *dspool.Pool, j job) *autoscale.Error {
	var s Settings
	_ = autoscale.DecodeSettings(pool, &s)
	p.mu.Lock()
	f, ok := p.failed[j.id]
	p.mu.Unlock()
	if ok { // Slurm shows it for MinJobAge: one scontrol is enough
		return f.err
	}
	e := &autoscale.Error{Class: autoscale.ClassOther, Engine: "slurm",
		Message: fmt.Sprintf("job %s %s on %s (%s): its log is %s there", j.id, j.state, j.nodes, j.reason,
			filepath.Join(cmp.Or(s.Logs, "/tmp"), "dspool-"+j.name+"-"+j.id+".log"))}
	cmd, cancel := p.command(ctx, "scontrol", "--oneliner", "show", "job", j.id)
	defer cancel()
	p.scontrol.Add(1)
	if out, err := run(cmd); err == nil && strings.Contains(out, "ExitCode=127:") {
		e.Class = autoscale.ClassImage
		exe := cmp.Or(s.Dspool, p.opts.Exe)
		e.Message = fmt.Sprintf("job %s exited 127 on %s: the dspool binary %s is not there (the pool's provider.dspool)", j.id, j.nodes, exe)
	}
	p.mu.Lock()
	p.failed[j.id] = failedJob{pool: pool.Name, err: e}
	p.mu.Unlock()
	return e
}

type failedJob struct {
	pool string
	err  *autoscale.Error
}

// Remove cancels the named nodes' jobs, in one scancel.
func (p *Provider) Remove(ctx context.Context, pool *dspool.Pool, names []string) error {
	if len(names) == 0 {
		return nil
	}
	p.mu.Lock()
	var ids []string
	missing := false
	for _, n := range names {
		if !strings.HasPrefix(n, pool.Name+"-") {
			continue
		}
		if id, ok := p.jobs[n]; ok {
			ids = append(ids, id)
		} else {
			missing = true
		}
	}
	p.mu.Unlock()
	if missing { // a job from before a restart of the control plane
		jobs, err := p.queue(ctx, pool.Name)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if slices.Contains(names, j.name) && !slices.Contains(ids, j.id) {
				ids = append(ids, j.id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	cmd, cancel := p.command(ctx, "scancel", ids...)
	defer cancel()
	p.scancel.Add(1)
	if _, err := run(cmd); err != nil && !strings.Contains(err.Error(), "Invalid job id") {
		return &autoscale.Error{Class: autoscale.ClassOther, Engine: "slurm", Message: "scancel: " + err.Error(), Err: err}
	}
	p.mu.Lock()
	for _, n := range names {
		delete(p.jobs, n)
	}
	p.mu.Unlock()
	p.opts.Logger.Info("slurm: cancelled nodes", "pool", pool.Name, "nodes", names, "jobs", ids)
	return nil
}
