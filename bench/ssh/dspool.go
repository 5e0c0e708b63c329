package main

import (
	"context"
	"encoding/json"
	"errors"
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

const upNodes = 2 // local agents of the default pool

// upProc is a running `dspool up` with its SSH gateway.
type upProc struct {
	bin     string
	cmd     *exec.Cmd
	config  string // DSPOOL_CONFIG: the CLI login `up` writes
	log     string
	sshPort int
	done    chan struct{}
}

// startUp starts `dspool up` in dir and waits until it is logged in, its
// agents are ready and its gateway accepts connections.
func startUp(ctx context.Context, bin, dir string, extra ...string) (*upProc, error) {
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	sshPort, err := freePort()
	if err != nil {
		return nil, err
	}
	u := &upProc{bin: bin, config: filepath.Join(dir, "login.yaml"), log: filepath.Join(dir, "up.log"),
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
	u.cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.config)
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
		if b, err := os.ReadFile(u.config); err != nil || json.Unmarshal(b, &login) != nil || login.Token == "" {
			return false, nil
		}
		ready, err := u.readyNodes(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ready == upNodes && listening(sshPort), nil
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

// readyNodes counts the default pool's ready nodes.
func (u *upProc) readyNodes(ctx context.Context) (int, error) {
	out, err := u.output(ctx, "node", "list", "--pool", "default", "-o", "json")
	if err != nil {
		return 0, err
	}
	var nodes []struct{ State string }
	if err := json.Unmarshal(out, &nodes); err != nil {
		return 0, fmt.Errorf("dspool node list -o json: %w", err)
	}
	ready := 0
	for _, n := range nodes {
		if n.State == "ready" {
			ready++
		}
	}
	return ready, nil
}

// cli runs a dspool command as the admin `up` logged in.
func (u *upProc) cli(ctx context.Context, args ...string) error {
	_, err := u.output(ctx, args...)
	return err
}

func (u *upProc) output(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.bin, args...)
	cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.config)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		return out, fmt.Errorf("dspool %v: %v: %s", args, err, host.Tail(stderr, 3))
	}
	return out, nil
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
