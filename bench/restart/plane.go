package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/bench/internal/host"
)

// harnessAddr is where this program's own requests come from: not
// 127.0.0.1, whose connections the simulated agents fill up to the
// server's limit per address.
var harnessAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// plane is a `dspool server` on a data directory of its own, which this
// program kills and starts again.
type plane struct {
	bin, dir, config string
	data, share      string
	addr, sshAddr    string // sshAddr "" without the gateway
	runs             int
	cmd              *exec.Cmd
	done             chan struct{}
	log              string      // the current run's output
	tls              *tls.Config // trusts the server's own CA
	admin            *api.Client
}

// startPlane runs `dspool server` in dir (data, share, config), with the
// SSH gateway when ssh, and waits for it to serve.
func startPlane(ctx context.Context, bin, dir string, ssh bool, uidBase int) (*plane, error) {
	port, err := host.FreePort()
	if err != nil {
		return nil, err
	}
	p := &plane{bin: bin, dir: dir, data: filepath.Join(dir, "data"), share: filepath.Join(dir, "share"),
		addr: "127.0.0.1:" + strconv.Itoa(port), config: filepath.Join(dir, "server.yaml")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sshListen := "off"
	if ssh {
		sp, err := host.FreePort()
		if err != nil {
			return nil, err
		}
		p.sshAddr = "127.0.0.1:" + strconv.Itoa(sp)
		sshListen = p.sshAddr
	}
	// The defaults but for the addresses: node grace 30 s, heartbeat 2 s.
	cfg := fmt.Sprintf("listen: %s\nssh_listen: %q\ndata: %s\nshare: %s\nadmin: %s\nuid_base: %d\n",
		p.addr, sshListen, p.data, p.share, benchAdmin, uidBase)
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if _, err := p.exec(); err != nil {
		return nil, err
	}
	err = host.Poll(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		tok, err := os.ReadFile(filepath.Join(p.data, "admin-token"))
		if err != nil || p.tls == nil && p.loadCA() != nil {
			return false, nil
		}
		p.admin = p.client(strings.TrimSpace(string(tok)))
		_, err = p.admin.WhoAmI(ctx)
		return err == nil, nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("start dspool server: %w (its output: %s)", err, p.log)
	}
	return p, nil
}

func (p *plane) loadCA() error {
	tc, err := api.TLSConfig(filepath.Join(p.data, "tls", "ca.crt"))
	if err == nil {
		p.tls = tc
	}
	return err
}

// client is an API client with token, from harnessAddr, on connections
// of its own.
func (p *plane) client(token string) *api.Client {
	t := &http.Transport{TLSClientConfig: p.tls, DialContext: (&net.Dialer{LocalAddr: harnessAddr, Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &api.Client{Server: "https://" + p.addr, Token: token, HTTP: &http.Client{Transport: t, Timeout: 30 * time.Second}}
}

// exec starts a new `dspool server` process on the data directory and
// returns the moment just before its exec.
func (p *plane) exec() (time.Time, error) {
	p.runs++
	p.log = filepath.Join(p.dir, fmt.Sprintf("server-%d.log", p.runs))
	out, err := os.Create(p.log)
	if err != nil {
		return time.Time{}, err
	}
	defer out.Close()
	p.cmd = exec.Command(p.bin, "server", "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// Its own process group, so that a Ctrl-C at the terminal reaches
	// this program alone, which stops it; stopped should this program
	// be killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	t0 := time.Now()
	if err := p.cmd.Start(); err != nil {
		return t0, fmt.Errorf("start %s server: %w", p.bin, err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); close(done) }()
	return t0, nil
}

// exited says how the current process ended, if it has.
func (p *plane) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("dspool server exited: %v: %s", p.cmd.ProcessState, tailFile(p.log, 3))
	default:
		return nil
	}
}

// kill ends the current process with SIGKILL and waits for it.
func (p *plane) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// term ends the current process with SIGTERM, as a service manager stops
// it, and returns how long it took to exit (it is killed after 60 s).
func (p *plane) term() (time.Duration, error) {
	t0 := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(t0), nil
	case <-time.After(time.Minute):
		p.kill()
		return time.Since(t0), fmt.Errorf("dspool server did not exit within a minute of SIGTERM: killed it (its output: %s)", p.log)
	}
}

// stop ends the current process, if it runs.
func (p *plane) stop() {
	if p.done == nil || p.exited() != nil {
		return
	}
	if _, err := p.term(); err != nil {
		host.Logf("%v", err)
	}
}

// url is the API's address.
func (p *plane) url() string { return "https://" + p.addr }

// tailFile is the last n lines of a file, on one line.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return host.Tail(b, n)
}

// logLines calls each with the lines of the current run's log, as far as
// written, from byte offset off; it returns the offset after the last whole
// line.
func logLines(path string, off int64, each func(string)) int64 {
	f, err := os.Open(path)
	if err != nil {
		return off
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return off
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return off // a partial line is read again next time
		}
		off += int64(len(line))
		each(line)
	}
}
