package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// apartSide is `dspool gateway`, a gateway in a process of its own
// (docs/decisions/0019), in front of the `dspool up` of d: the nodes open
// each channel's connections to it, over TLS.
type apartSide struct {
	side
	d    *dspoolSide
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startApart(ctx context.Context, d *dspoolSide, dir string) *apartSide {
	a := &apartSide{side: side{t: &Target{Name: "dspool gateway apart", Binary: d.bin}, e: d.e}, d: d, dir: dir}
	a.cpu = func() float64 { return procCPU(a.cmd.Process.Pid) }
	if d.t.Error != "" {
		a.t.Error = "no dspool up (see dspool gateway)"
		return a
	}
	a.restart(ctx)
	return a
}

// restart (re)starts `dspool gateway` against d's current `dspool up`,
// logged in as its admin, whose token has the gateway scope.
func (a *apartSide) restart(ctx context.Context) {
	a.stop()
	if a.d.up == nil {
		a.t.Error = "no dspool up (see dspool gateway)"
		return
	}
	port, err := host.FreePort()
	if err != nil {
		a.t.Error = err.Error()
		return
	}
	a.log = filepath.Join(a.dir, "gateway.log")
	f, err := os.Create(a.log)
	if err != nil {
		a.t.Error = err.Error()
		return
	}
	defer f.Close()
	a.cmd = exec.Command(a.d.bin, "gateway", "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "--agent-listen", "127.0.0.1:0")
	a.cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+a.d.up.Config)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := a.cmd.Start(); err != nil {
		a.t.Error = err.Error()
		return
	}
	a.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(a.cmd, a.done)
	err = host.Poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-a.done:
			b, _ := os.ReadFile(a.log)
			return false, fmt.Errorf("`dspool gateway` exited: %s", host.Tail(b, 3))
		default:
		}
		return host.Listening(port), nil
	})
	if err != nil {
		a.t.Error = fmt.Sprintf("start `dspool gateway`: %v (its log: %s; keep it with -keep)", err, a.log)
		return
	}
	a.e.Port = port
	host.Logf("dspool gateway apart: on 127.0.0.1:%d", port)
}

// target is a's figures; nil when it was not measured.
func (a *apartSide) target() *Target {
	if a == nil {
		return nil
	}
	return a.t
}

func (a *apartSide) stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}
