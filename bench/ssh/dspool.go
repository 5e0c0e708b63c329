package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

const upNodes = 2 // local agents of the default pool

// upProc is a running `dspool up` with its SSH gateway.
type upProc struct {
	host.CLI // as the login `up` writes
	cmd      *exec.Cmd
	log      string
	sshPort  int
	done     chan struct{}
}

// startUp starts `dspool up` in dir and waits until it is logged in, its
// agents are ready and its gateway accepts connections.
func startUp(ctx context.Context, bin, dir string, extra ...string) (*upProc, error) {
	apiPort, err := host.FreePort()
	if err != nil {
		return nil, err
	}
	sshPort, err := host.FreePort()
	if err != nil {
		return nil, err
	}
	u := &upProc{CLI: host.CLI{Bin: bin, Config: filepath.Join(dir, "login.yaml")}, log: filepath.Join(dir, "up.log"),
		sshPort: sshPort, done: make(chan struct{})}
	log, err := os.Create(u.log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	u.cmd = exec.Command(bin, "up", "--data", filepath.Join(dir, "data"), "--nodes", strconv.Itoa(upNodes),
		"--uid-base", strconv.Itoa(host.UIDBase()),
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort)),
		"--ssh-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(sshPort)))
	u.cmd.Args = append(u.cmd.Args, extra...)
	u.cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.Config)
	u.cmd.Stdout, u.cmd.Stderr = log, log
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGINT} // should this program be killed
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = u.cmd.Wait(); close(u.done) }()

	t0 := time.Now()
	var last error // the latest failure to list the nodes, retried
	err = host.Poll(ctx, time.Minute, 200*time.Millisecond, func() (bool, error) {
		select {
		case <-u.done:
			b, _ := os.ReadFile(u.log)
			return false, fmt.Errorf("`dspool up` exited: %s", host.Tail(b, 3))
		default:
		}
		// `dspool up` writes the login once it listens.
		var login struct{ Server, Token string }
		if b, err := os.ReadFile(u.Config); err != nil || json.Unmarshal(b, &login) != nil || login.Token == "" {
			return false, nil
		}
		ready, err := u.ReadyNodes(ctx, "default")
		if err != nil {
			last = err
			return false, nil
		}
		return ready == upNodes && host.Listening(sshPort), nil
	})
	if err != nil && last != nil {
		err = fmt.Errorf("%w; %w", err, last)
	}
	if err != nil {
		u.stop()
		return nil, fmt.Errorf("start `dspool up --ssh-listen`: %w (its log: %s; keep it with -keep)", err, u.log)
	}
	host.Logf("dspool: up with %d ready nodes, gateway on 127.0.0.1:%d, in %.1fs", upNodes, sshPort, time.Since(t0).Seconds())
	return u, nil
}

// cpu returns the cpu-seconds `dspool up` has used so far: its control
// plane and gateway (its agents are processes of their own).
func (u *upProc) cpu() float64 { return procCPU(u.cmd.Process.Pid) }

// procCPU returns the cpu-seconds process pid has used so far.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command's name in parentheses: state (field 3), ...,
	// utime (14) and stime (15), in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// cli runs a dspool command as the admin `up` logged in.
func (u *upProc) cli(ctx context.Context, args ...string) error {
	_, err := u.Output(ctx, nil, args...)
	return err
}

// stop sends the Ctrl-C that `dspool up` expects; it kills it after 45s.
func (u *upProc) stop() {
	_ = u.cmd.Process.Signal(os.Interrupt)
	select {
	case <-u.done:
	case <-time.After(45 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
	}
}
