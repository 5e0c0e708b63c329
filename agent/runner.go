package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
)

// attempt is one attempt this agent has been told to run.
type attempt struct {
	spec api.AttemptSpec

	mu         sync.Mutex
	running    bool
	startedAt  *time.Time
	finishedAt *time.Time
	result     *dspool.AttemptResult
	killReason dspool.Reason // why the agent killed it, if it did
	killing    bool
	pgid       int
	cg         *cgroup
	runtime    string     // the attempt's runtime directory, under the agent's
	container  *container // the attempt's container, when it runs in an image
	done       chan struct{}

	// killMessage says why the agent killed it, when its reason's own
	// words do not.
	killMessage string
}

func (a *attempt) status() api.AttemptStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return api.AttemptStatus{AttemptRef: a.spec.AttemptRef, Running: a.result == nil,
		StartedAt: a.startedAt, FinishedAt: a.finishedAt, Result: a.result}
}

// launch starts the attempt and returns at once; the attempt reports its
// own end through a.finish.
func (ag *Agent) launch(a *attempt) {
	err := ag.start(a)
	if err != nil {
		ag.log.Warn("attempt did not start", "job", a.spec.Job, "attempt", a.spec.Attempt, "err", err)
		// Say it where users look first: the job's log (its directory may
		// not exist yet; it is the user's once the job runs).
		o := ag.owner(a.spec.User)
		if werr := share.WriteLog(ag.cfg.Share, a.spec.JobDir, a.spec.Log, o, fmt.Sprintf("dspool: the job could not start: %v\n", err)); werr != nil {
			ag.log.Warn("write why an attempt could not start into its log", "job", a.spec.Job, "attempt", a.spec.Attempt, "err", werr)
		}
		a.finish(dspool.AttemptResult{Reason: dspool.ReasonStartError, Message: err.Error()})
		ag.changed()
	}
}

func (a *attempt) finish(r dspool.AttemptResult) {
	a.mu.Lock()
	now := time.Now().UTC()
	a.finishedAt = &now
	a.result = &r
	a.running = false
	a.mu.Unlock()
	close(a.done)
}

func (ag *Agent) jobEnv(s *api.AttemptSpec, home string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "USER=" + s.User.Name, "LOGNAME=" + s.User.Name, "SHELL=/bin/bash", "LANG=C.UTF-8",
		"DSPOOL_JOB_ID=" + strconv.FormatInt(s.Job, 10), "DSPOOL_JOB_NAME=" + s.Name,
		"DSPOOL_ATTEMPT=" + strconv.Itoa(s.Attempt), "DSPOOL_POOL=" + s.Pool, "DSPOOL_NODE=" + ag.nodeName,
		"DSPOOL_SHARE=" + ag.cfg.Share, "DSPOOL_JOB_DIR=" + filepath.Join(ag.cfg.Share, s.JobDir),
		"DSPOOL_CPUS=" + s.CPUs.String(), "DSPOOL_MEMORY=" + strconv.FormatInt(int64(s.Memory), 10),
	}
	env = append(env, ag.gpuEnv(s.GPUs)...)
	if s.PreemptGrace > 0 {
		env = append(env, "DSPOOL_PREEMPT_GRACE="+strconv.Itoa(int(time.Duration(s.PreemptGrace)/time.Second)))
	}
	if s.ArrayID != 0 {
		env = append(env, "DSPOOL_ARRAY_ID="+strconv.FormatInt(s.ArrayID, 10), "DSPOOL_ARRAY_INDEX="+strconv.Itoa(s.ArrayIndex))
	}
	env = append(env, ag.workEnv(s.WorkToken)...)
	for k, v := range s.Env {
		if p := strings.Index(k, "="); p < 0 {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (ag *Agent) start(a *attempt) (err error) {
	s := &a.spec
	// The values live in the process's environment and files from here:
	// the agent keeps none.
	defer wipeSecrets(s.Secrets)
	uid, gid := -1, -1
	if ag.root && s.User.UID != 0 {
		uid, gid = s.User.UID, s.User.GID
		if err := ag.accounts.ensure(s.User, filepath.Join(ag.cfg.Share, s.Home)); err != nil {
			return err
		}
	}
	// Directories: home and the job's directory belong to the user, made by
	// the agent in its own parents; beneath them it acts as the user.
	o := ag.owner(s.User)
	if err := ag.userDir(s.Home, o, 0o700); err != nil {
		return err
	}
	if err := ag.userDir(s.JobDir, o, 0o750); err != nil {
		return err
	}
	env := ag.jobEnv(s, filepath.Join(ag.cfg.Share, s.Home))
	var logf *os.File
	var path string
	err = share.As(o.UID, o.GID, func() error {
		if err := share.MkdirAll(ag.cfg.Share, s.Workdir, o, 0o750); err != nil {
			return err
		}
		// The command is looked up as the user too: a start error must not
		// tell what is in directories the user cannot read. In an image,
		// the container looks it up.
		var err error
		if s.Image == "" {
			if path, err = lookPath(s.Command[0], envValue(env, "PATH")); err != nil {
				return err
			}
		}
		logf, err = share.OpenFile(ag.cfg.Share, s.Log, o, 0o640)
		return err
	})
	if err != nil {
		return err
	}
	defer logf.Close()

	senv, err := secretEnv(s.Secrets)
	if err != nil {
		return err
	}
	env = append(env, senv...)
	if s.Image != "" {
		if _, err := ag.podmanFor(context.Background()); err != nil {
			return err
		}
	}
	var mounts []string // what a container sees of the agent's files
	if ag.caFile != "" && envValue(env, "DSPOOL_CA") != "" {
		mounts = append(mounts, ag.caFile)
	}
	if hasSecretFiles(s.Secrets) {
		name := fmt.Sprintf("j%d-a%d", s.Job, s.Attempt)
		dir, err := ag.writeSecrets(name, uid, gid, s.Secrets)
		if err != nil {
			return err
		}
		a.runtime = name
		defer func() {
			if err != nil {
				ag.removeRuntime(name)
			}
		}()
		env = append(env, "DSPOOL_SECRETS_DIR="+dir)
		mounts = append(mounts, dir)
	}
	if ag.cgroups != nil {
		name := fmt.Sprintf("j%d-a%d", s.Job, s.Attempt)
		cg, err := ag.cgroups.create(name, s.CPUs, s.Memory, ag.cfg.PidsLimit, ag.deniedGPUs(s.GPUs))
		if err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
		a.mu.Lock() // a kill during the start reads it
		a.cg = cg
		a.mu.Unlock()
	}
	var cmd *exec.Cmd
	spawnIn := a.cg
	if s.Image != "" {
		if a.cg == nil {
			a.removeCgroup()
			return noPodman(ag.nodeName, "the agent has no cgroups")
		}
		c, ctr, err := ag.containerCmd(context.Background(), a, env, o, mounts)
		if err != nil {
			a.removeCgroup()
			return err
		}
		a.mu.Lock() // a kill during the start reads it
		a.container = ctr
		a.mu.Unlock()
		// podman runs as root outside the attempt's cgroup; the container
		// is placed in it (--cgroup-parent).
		cmd, spawnIn, uid, gid = c, nil, -1, -1
	} else {
		cmd = &exec.Cmd{Path: path, Args: s.Command, Env: env, Dir: filepath.Join(ag.cfg.Share, s.Workdir)}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		a.removeCgroup()
		ag.removeContainer(a.container)
		return err
	}
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = outW, outW, sysProcAttr(uid, gid, spawnIn)
	err = spawn(cmd, spawnIn)
	outW.Close()
	if err != nil {
		outR.Close()
		a.removeCgroup()
		ag.removeContainer(a.container)
		return fmt.Errorf("start %s: %w", s.Command[0], unwrapExec(err))
	}
	ag.wd.group(cmd.Process.Pid)
	now := time.Now().UTC()
	a.mu.Lock()
	a.pgid = cmd.Process.Pid
	a.running = true
	a.startedAt = &now
	a.mu.Unlock()

	// Copy output to the share, capped; the copy goes on (discarding) past
	// the cap so the job never blocks on a full pipe.
	logDup, err := dupFile(logf)
	if err != nil {
		outR.Close()
		return err
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logDup.Close()
		copyCapped(logDup, outR, int64(s.OutputLimit))
		outR.Close()
	}()
	ag.changed()
	go ag.supervise(a, cmd, copied)
	return nil
}

func (a *attempt) removeCgroup() {
	if a.cg != nil {
		a.cg.remove()
	}
}

// unwrapExec drops os/exec's "fork/exec PATH:" prefix, which repeats what
// the caller already says.
func unwrapExec(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

func copyCapped(dst io.Writer, src io.Reader, limit int64) {
	buf := make([]byte, 32<<10)
	var n int64
	truncated := false
	for {
		m, err := src.Read(buf)
		if m > 0 && !truncated {
			w := int64(m)
			if n+w > limit {
				w = limit - n
				truncated = true
			}
			_, _ = dst.Write(buf[:w])
			n += w
			if truncated {
				fmt.Fprintf(dst, "\n[dspool: output truncated at %s; raise the pool's output_limit to keep more]\n", dspool.Bytes(limit))
			}
		}
		if err != nil {
			return
		}
	}
}

// supervise waits for the attempt's main process, enforces the time limit,
// kills whatever the job left behind, and records the result.
func (ag *Agent) supervise(a *attempt, cmd *exec.Cmd, copied chan struct{}) {
	s := &a.spec
	var limit <-chan time.Time
	if s.TimeLimit > 0 {
		t := time.NewTimer(time.Duration(s.TimeLimit))
		defer t.Stop()
		limit = t.C
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-limit:
		ag.kill(a, dspool.ReasonTimeout)
		waitErr = <-exited
	}
	// The main process is gone: kill what it left (daemons included) so
	// the attempt ends with its whole tree.
	a.signal(syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	r := dspool.AttemptResult{}
	code := 0
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if waitErr != nil {
		r.Message = waitErr.Error()
		code = -1
	}
	r.ExitCode = &code
	ag.wd.ended(cmd.Process.Pid)
	a.mu.Lock()
	reason, why := a.killReason, a.killMessage
	a.mu.Unlock()
	if a.container != nil {
		// podman run --rm removed a container it saw end; one that ended
		// otherwise (killed, or podman's own failure) is removed here.
		// podman exits 125 when it fails itself (a job of its own that
		// exits 125 is taken for that too).
		a.container.ended = reason == "" && ee != nil && !ee.Sys().(syscall.WaitStatus).Signaled() && code != podmanFailed
		if code == podmanFailed && reason == "" {
			ag.mu.Lock()
			if pm := ag.podman; pm != nil && s.ImageFile {
				defer pm.forget()
			}
			ag.mu.Unlock()
			r.Reason = dspool.ReasonStartError
			r.Message = fmt.Sprintf("podman could not run the job in image %s on node %s; the job's log says why", s.Image, ag.nodeName)
		}
	}
	if reason != "" && r.Reason == "" {
		r.Reason = reason
		switch {
		case why != "":
			r.Message = why
		case reason == dspool.ReasonTimeout:
			r.Message = fmt.Sprintf("time limit of %s reached", time.Duration(s.TimeLimit))
		case reason == dspool.ReasonPreempted:
			r.Message = fmt.Sprintf("evicted for a job of a higher score (SIGTERM, then SIGKILL after a grace of %s); it waits in the queue again", time.Duration(s.PreemptGrace))
		case reason == dspool.ReasonNodeLost:
			r.Message = "stopped because its node's agent was shut down (dspool up or the agent stopped); retried if the job has retries left"
		}
	} else if r.Reason == "" && code != 0 {
		r.Reason = dspool.ReasonExit
		if a.cg != nil && (a.cg.oomKilled() || a.container != nil && code == 137 && a.cg.hitLimit()) {
			r.Message = fmt.Sprintf("killed for using more than its memory limit of %s", s.Memory)
		}
	}
	ag.removeContainer(a.container)
	a.removeCgroup()
	ag.removeRuntime(a.runtime)
	ag.workEnded(s.User.UID, s.User.GID)
	a.finish(r)
	ag.log.Info("attempt finished", "job", s.Job, "attempt", s.Attempt, "exit", code, "reason", r.Reason)
	ag.changed()
}

// signal sends sig to the attempt's process group and to every process in
// its cgroup (of a container's, every process but conmon).
func (a *attempt) signal(sig syscall.Signal) {
	a.mu.Lock()
	pgid, cg, ctr := a.pgid, a.cg, a.container
	a.mu.Unlock()
	if pgid > 0 {
		_ = syscall.Kill(-pgid, sig)
	}
	switch {
	case cg != nil && ctr != nil:
		// Not conmon, which must see the container end to record its
		// exit for podman; it goes with the cgroup once the container
		// is removed.
		cg.signalBut(sig, "conmon")
	case cg != nil:
		cg.signal(sig)
	}
}

// kill sends SIGTERM to the whole tree, then SIGKILL after the grace period.
func (ag *Agent) kill(a *attempt, reason dspool.Reason) {
	a.mu.Lock()
	if a.killing || a.result != nil {
		a.mu.Unlock()
		return
	}
	a.killing = true
	if a.killReason == "" {
		a.killReason = reason
	}
	a.mu.Unlock()
	grace := time.Duration(a.spec.KillGrace)
	if reason == dspool.ReasonPreempted && a.spec.PreemptGrace > 0 {
		grace = time.Duration(a.spec.PreemptGrace)
	}
	a.signal(syscall.SIGTERM)
	go func() {
		select {
		case <-a.done:
		case <-time.After(grace):
			a.signal(syscall.SIGKILL)
		}
	}()
}
