package host

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/api"
)

// Up is a running `dspool up` and the login it wrote.
type Up struct {
	CLI // as the login `up` writes
	Log string
	// Client is the admin's login: every scope, no expiry.
	Client *api.Client
	cmd    *exec.Cmd
	done   chan struct{}
}

// StartUp runs `dspool up` with args, its login in dir/login.json and its
// log in dir/up.log, and waits (up to a minute) until it has written the
// login and ready says it is ready.
func StartUp(ctx context.Context, bin, dir string, args []string, ready func(*api.Client) bool) (*Up, error) {
	u := &Up{CLI: CLI{Bin: bin, Config: filepath.Join(dir, "login.json")}, Log: filepath.Join(dir, "up.log"), done: make(chan struct{})}
	log, err := os.Create(u.Log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	u.cmd = exec.Command(bin, append([]string{"up"}, args...)...)
	u.cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.Config)
	u.cmd.Stdout, u.cmd.Stderr = log, log
	// Its own process group: a Ctrl-C at the terminal reaches this
	// program, which stops it; SIGINT should this program be killed.
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = u.cmd.Wait(); close(u.done) }()
	err = Poll(ctx, time.Minute, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-u.done:
			b, _ := os.ReadFile(u.Log)
			return false, fmt.Errorf("`dspool up` exited: %s", Tail(b, 3))
		default:
		}
		// `dspool up` writes the login once it listens.
		cl, ok := LoginClient(u.Config)
		if !ok {
			return false, nil
		}
		u.Client = cl
		return ready(u.Client), nil
	})
	if err != nil {
		u.Stop()
		return nil, fmt.Errorf("start `dspool up`: %w (its log: %s; keep it with -keep)", err, u.Log)
	}
	return u, nil
}

// PID is the process id of `dspool up`, the control plane.
func (u *Up) PID() int { return u.cmd.Process.Pid }

// Stop sends the Ctrl-C that `dspool up` expects; it kills it after 45s.
func (u *Up) Stop() {
	_ = u.cmd.Process.Signal(os.Interrupt)
	select {
	case <-u.done:
	case <-time.After(45 * time.Second):
		Logf("dspool up did not stop within 45s: killing it")
		_ = u.cmd.Process.Kill()
		<-u.done
	}
}

// LoginClient is an API client from the login `dspool up` wrote at path
// (server, token and the CA its certificate chains to); false until the
// login is there.
func LoginClient(path string) (*api.Client, bool) {
	var login struct{ Server, Token, CA string }
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &login) != nil || login.Token == "" {
		return nil, false
	}
	hc, err := api.NewHTTPClient(login.CA)
	if err != nil {
		return nil, false
	}
	return &api.Client{Server: login.Server, Token: login.Token, HTTP: hc}, true
}

// TLSOf is the TLS configuration of cl's HTTP client (nil for plain HTTP).
func TLSOf(cl *api.Client) *tls.Config {
	if cl.HTTP == nil || !strings.HasPrefix(cl.Server, "https://") {
		return nil
	}
	if t, ok := cl.HTTP.Transport.(*http.Transport); ok {
		return t.TLSClientConfig
	}
	return nil
}

// Addr is the host:port of a URL http(s)://HOST:PORT.
func Addr(url string) string {
	_, rest, _ := strings.Cut(url, "://")
	return rest
}
