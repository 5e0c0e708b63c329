package main

import (
	"context"
	"fmt"
	"github.com/dspool/dspool/bench/internal/host"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// jupyter is a jupyter_server this program runs as a user, with the
// command line dspool's agent uses, reached without any proxy.
type jupyter struct {
	*proc
	port  int
	token string
	base  string // http://127.0.0.1:PORT
	log   string
	// started is from starting the process to its first answer (polled
	// every pollEvery).
	started time.Duration
}

// startJupyter starts `python3 -m jupyter_server` as the account name, with
// a home of its own under dir, and waits until it answers with its token.
func startJupyter(ctx context.Context, dir, name string) (*jupyter, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	home := filepath.Join(dir, "direct-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(home, int(uid), int(gid)); err != nil {
		return nil, err
	}
	port, err := host.FreePort()
	if err != nil {
		return nil, err
	}
	j := &jupyter{port: port, token: secret(24), base: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, "direct-jupyter.log")}
	log, err := os.Create(j.log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	base := "/user/" + name + "/"
	cmd := exec.Command(python, "-m", "jupyter_server",
		"--ServerApp.ip=127.0.0.1", "--ServerApp.port="+strconv.Itoa(port), "--ServerApp.port_retries=0",
		"--ServerApp.base_url="+base, "--ServerApp.root_dir="+home, "--ServerApp.open_browser=False")
	// The agent's environment, less dspool's own variables; the token in
	// the environment, as the agent passes it.
	cmd.Env = []string{"PATH=/usr/bin:/usr/sbin:/bin:/sbin", "HOME=" + home, "USER=" + name, "LOGNAME=" + name,
		"SHELL=/bin/bash", "LANG=C.UTF-8", "JUPYTER_TOKEN=" + j.token}
	cmd.Dir = home
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if j.proc, err = startProc("jupyter_server", cmd); err != nil {
		return nil, err
	}
	t0 := time.Now()
	hc := &http.Client{Timeout: 2 * time.Second}
	err = host.Poll(ctx, time.Minute, pollEvery, func() (bool, error) {
		if j.exited() {
			b, _ := os.ReadFile(j.log)
			return false, fmt.Errorf("it exited: %s", host.Tail(b, 3))
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", j.base+base+"api/status", nil)
		req.Header.Set("Authorization", "token "+j.token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		j.stop()
		return nil, fmt.Errorf("%w (its log: %s; keep it with -keep)", err, j.log)
	}
	j.started = time.Since(t0)
	host.Logf("direct: jupyter_server (pid %d) as %s on 127.0.0.1:%d, answering in %.3fs", cmd.Process.Pid, name, port, j.started.Seconds())
	return j, nil
}

// stop stops the server as the agent does: SIGTERM to its process group,
// SIGKILL 5 s later.
func (j *jupyter) stop() {
	if j != nil {
		j.proc.stop(syscall.SIGTERM, 5*time.Second, true)
	}
}
