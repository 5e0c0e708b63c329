package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// proc is a process this program started (an agent, an ssh client), its
// output in a file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

// startProc runs bin with args and env added to this process's, its
// standard output and error in log.
func startProc(name, log string, env []string, bin string, args ...string) (*proc, error) {
	out, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p := &proc{name: name, log: log, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// Its own process group (a Ctrl-C reaches this program, which stops
	// it); stopped should this program be killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop signals the process and waits for it, killing it after timeout.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(timeout):
		host.Logf("%s did not exit within %s of %s: killing it (its output: %s)", p.name, timeout, sig, p.log)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
