package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// Debian 12's JupyterHub 3.0 and configurable-http-proxy 4.5.
const (
	jupyterhub = "/usr/bin/jupyterhub"
	chp        = "/usr/bin/configurable-http-proxy"
	singleuser = "/usr/bin/jupyterhub-singleuser"
	installHub = "apt-get install -y jupyterhub node-configurable-http-proxy python3-jupyter-server python3-notebook python3-ipykernel python3-nbclassic"
	// Debian's CHP needs its modules found; the node on PATH may not be
	// Debian's.
	nodePath = "/usr/share/nodejs:/usr/lib/nodejs:/usr/lib/x86_64-linux-gnu/nodejs"
)

// hubPeer is a private JupyterHub on 127.0.0.1: the hub, the proxy it
// starts, and the single-user servers it spawns as hubUser.
type hubPeer struct {
	*proc
	dir                    string
	port, api, chpAPI      int // public (CHP), the hub's own, CHP's API
	token, chpToken, passw string
	log                    string
	chpPID                 int
	serverPIDs             map[int]bool // single-user servers seen
	createdUser            bool
}

var hubConfig = template.Must(template.New("config").Parse(`# written by bench/jupyter
c = get_config()  # noqa
c.JupyterHub.bind_url = 'http://127.0.0.1:{{.Port}}'
c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{{.API}}'
c.JupyterHub.db_url = 'sqlite:///{{.Dir}}/jupyterhub.sqlite'
c.JupyterHub.cookie_secret_file = '{{.Dir}}/cookie_secret'
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.ConfigurableHTTPProxy.command = ['{{.CHP}}']
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{{.CHPAPI}}'
c.ConfigurableHTTPProxy.auth_token = '{{.CHPToken}}'
c.ConfigurableHTTPProxy.pid_file = '{{.Dir}}/chp.pid'
c.ConfigurableHTTPProxy.debug = False
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = '{{.Password}}'
c.Authenticator.allowed_users = {'{{.User}}'}
c.JupyterHub.services = [{'name': 'bench', 'api_token': '{{.Token}}'}]
c.JupyterHub.load_roles = [{'name': 'bench-admin', 'services': ['bench'],
    'scopes': ['admin:users', 'admin:servers', 'read:users', 'servers', 'proxy', 'list:users', 'access:servers']}]
c.Spawner.ip = '127.0.0.1'
c.Spawner.cmd = ['{{.Singleuser}}']
c.Spawner.default_url = '/tree'
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 30
c.Spawner.env_keep = ['PATH', 'LANG']
c.Spawner.environment = {'PATH': '/usr/bin:/bin'}
c.JupyterHub.log_level = 'INFO'
c.JupyterHub.last_activity_interval = 300
`))

// hubEnv is this program's environment with Debian's binaries first on
// PATH (the hub and what it spawns run python3 and node from PATH) and
// Debian's node modules found.
func hubEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "NODE_PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH=/usr/bin:/usr/sbin:/bin:/sbin:"+os.Getenv("PATH"), "NODE_PATH="+nodePath)
}

// startHub creates hubUser if absent, writes the hub's config into dir and
// starts the hub in the foreground, so that it is stopped by its PID. On
// error it has undone what it did.
func startHub(ctx context.Context, dir string) (h *hubPeer, err error) {
	for _, f := range []string{jupyterhub, chp, singleuser} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("no %s: install JupyterHub with `%s`", f, installHub)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h = &hubPeer{dir: dir, log: filepath.Join(dir, "hub.log"), token: secret(32), chpToken: secret(32),
		passw: secret(12), serverPIDs: map[int]bool{}}
	defer func() {
		if err != nil {
			h.stop()
		}
	}()
	if !host.UserExists(hubUser) {
		if err := command(ctx, "useradd", "-m", "-s", "/bin/bash", hubUser); err != nil {
			return h, err
		}
		h.createdUser = true
	} else {
		host.Logf("jupyterhub: user %s exists already; it is used and left in place", hubUser)
	}
	for _, p := range []*int{&h.port, &h.api, &h.chpAPI} {
		if *p, err = host.FreePort(); err != nil {
			return h, err
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "jupyterhub_config.py"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return h, err
	}
	err = hubConfig.Execute(f, map[string]any{"Port": h.port, "API": h.api, "CHPAPI": h.chpAPI, "Dir": dir,
		"CHP": chp, "CHPToken": h.chpToken, "Password": h.passw, "User": hubUser, "Token": h.token, "Singleuser": singleuser})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return h, err
	}
	log, err := os.Create(h.log)
	if err != nil {
		return h, err
	}
	defer log.Close()
	cmd := exec.Command(jupyterhub, "-f", filepath.Join(dir, "jupyterhub_config.py"))
	cmd.Dir, cmd.Env = dir, hubEnv()
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group (a Ctrl-C at the terminal reaches this
	// program, which stops it); SIGTERM should this program be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if h.proc, err = startProc("jupyterhub", cmd); err != nil {
		return h, err
	}
	t0 := time.Now()
	err = host.Poll(ctx, 90*time.Second, 100*time.Millisecond, func() (bool, error) {
		if h.exited() {
			b, _ := os.ReadFile(h.log)
			return false, fmt.Errorf("jupyterhub exited: %s", host.Tail(b, 3))
		}
		if h.chpPID == 0 {
			if b, err := os.ReadFile(filepath.Join(dir, "chp.pid")); err == nil {
				h.chpPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
		}
		// Through the proxy to the hub's API.
		code, _, err := h.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/hub/api", h.port), "")
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		return h, fmt.Errorf("jupyterhub: %w (its log: %s; keep it with -keep)", err, h.log)
	}
	host.Logf("jupyterhub: hub (pid %d) and configurable-http-proxy (pid %d) on 127.0.0.1:%d, in %.1fs",
		cmd.Process.Pid, h.chpPID, h.port, time.Since(t0).Seconds())
	return h, nil
}

// get sends GET url with a token (if any) and returns the status and body.
func (h *hubPeer) get(ctx context.Context, url, token string) (int, []byte, error) {
	return h.request(ctx, "GET", url, token)
}

func (h *hubPeer) request(ctx context.Context, method, url, token string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	resp, err := browser.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// serverState is the hub's view of the user's default server: none,
// pending or ready. It records the server's PID, for the cleanup.
func (h *hubPeer) serverState(ctx context.Context) (string, error) {
	code, body, err := h.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/hub/api/users/%s", h.port, hubUser), h.token)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("GET /hub/api/users/%s: %d: %s", hubUser, code, host.Tail(body, 2))
	}
	var u struct {
		Servers map[string]struct {
			Ready bool
			State struct{ PID int }
		}
	}
	if err := json.Unmarshal(body, &u); err != nil {
		return "", err
	}
	s, ok := u.Servers[""]
	if s.State.PID > 0 {
		h.serverPIDs[s.State.PID] = true
	}
	switch {
	case !ok:
		return "none", nil
	case s.Ready:
		return "ready", nil
	}
	return "pending", nil
}

// stopServer stops the user's server through the hub's API (DELETE) and
// waits until the hub has none. The hub refuses to stop a server whose
// spawn is pending (400): the DELETE is repeated once it is not.
func (h *hubPeer) stopServer(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	del := func() (bool, error) {
		code, body, err := h.request(ctx, "DELETE", fmt.Sprintf("http://127.0.0.1:%d/hub/api/users/%s/server", h.port, hubUser), h.token)
		switch {
		case err != nil:
			return false, err
		case code == http.StatusNoContent || code == http.StatusAccepted:
			return true, nil
		case code == http.StatusBadRequest: // pending, or no server
			return false, nil
		}
		return false, fmt.Errorf("DELETE /hub/api/users/%s/server: %d: %s", hubUser, code, host.Tail(body, 2))
	}
	accepted, err := del()
	if err != nil {
		return 0, err
	}
	err = host.Poll(ctx, 60*time.Second, pollEvery, func() (bool, error) {
		s, err := h.serverState(ctx)
		if err != nil || s == "none" {
			return s == "none", err
		}
		if !accepted && s == "ready" {
			accepted, err = del()
		}
		return false, err
	})
	return time.Since(t0), err
}

// loginToServer is jhub-bench.sh's browser-like flow: POST /hub/login with
// next=/hub/spawn, GET /hub/spawn (which starts the server) following up to
// 3 redirects, then /user/NAME/api through the proxy until it answers 200
// with the server's version.
func (h *hubPeer) loginToServer(ctx context.Context) (d, loggedIn time.Duration, body string, err error) {
	base := fmt.Sprintf("http://127.0.0.1:%d", h.port)
	jar, _ := cookiejar.New(nil)
	noFollow := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	follow := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) > 3 {
				return errors.New("stopped after 3 redirects")
			}
			return nil
		}}
	t0 := time.Now()
	form := url.Values{"username": {hubUser}, "password": {h.passw}}
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/hub/login?next=%2Fhub%2Fspawn", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noFollow.Do(req)
	if err != nil {
		return 0, 0, "", fmt.Errorf("POST /hub/login: %w", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return 0, 0, "", fmt.Errorf("POST /hub/login: %s: %s", resp.Status, host.Tail(b, 2))
	}
	loggedIn = time.Since(t0)
	// As curl -L --max-redirs 3 ... || true: where the redirects end does
	// not matter, the server has been started.
	req, _ = http.NewRequestWithContext(ctx, "GET", base+"/hub/spawn", nil)
	if resp, err := follow.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
	} else if ctx.Err() != nil {
		return 0, 0, "", ctx.Err()
	}
	var last string
	err = host.Poll(ctx, 90*time.Second, pollEvery, func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, "GET", base+"/user/"+hubUser+"/api", nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		last = fmt.Sprintf("%s: %s", resp.Status, host.Tail(b, 1))
		body = strings.TrimSpace(string(b))
		return resp.StatusCode == http.StatusOK && strings.Contains(body, `"version"`), nil
	})
	if err != nil {
		return 0, 0, "", fmt.Errorf("GET /user/%s/api: %w (last: %s)", hubUser, err, last)
	}
	return time.Since(t0), loggedIn, body, nil
}

// directTarget is the single-user server's address, from the proxy's routes.
func (h *hubPeer) directTarget(ctx context.Context) (string, error) {
	code, body, err := h.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/api/routes", h.chpAPI), h.chpToken)
	if err != nil {
		return "", err
	}
	var routes map[string]struct{ Target string }
	if code != http.StatusOK || json.Unmarshal(body, &routes) != nil {
		return "", fmt.Errorf("configurable-http-proxy's routes: %d: %s", code, host.Tail(body, 2))
	}
	t := routes["/user/"+hubUser].Target
	if !strings.HasPrefix(t, "http://127.0.0.1:") {
		return "", fmt.Errorf("no loopback route to /user/%s in %s", hubUser, host.Tail(body, 2))
	}
	return strings.TrimSuffix(t, "/"), nil
}

// stop stops the user's server through the hub, then the hub by its PID
// (which stops its proxy and servers), then whatever of those still runs,
// by their PIDs, and removes the user if it was created here.
func (h *hubPeer) stop() {
	if h.proc != nil && !h.exited() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if s, err := h.serverState(ctx); err == nil && s != "none" {
			if _, err := h.stopServer(ctx); err != nil {
				host.Logf("jupyterhub: stop the server: %v", err)
			}
		}
		cancel()
		h.proc.stop(syscall.SIGTERM, 20*time.Second, false)
	}
	if b, err := os.ReadFile(filepath.Join(h.dir, "chp.pid")); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			h.chpPID = pid
		}
	}
	stopPID(h.chpPID, "configurable-http-proxy", 5*time.Second)
	for pid := range h.serverPIDs {
		stopPID(pid, "jupyterhub-singleuser", 5*time.Second)
	}
	if h.createdUser {
		host.RemoveUser(hubUser, "-r")
	}
}

// hubVersions is `jupyterhub --version` and `configurable-http-proxy --version`.
func hubVersions(ctx context.Context) string {
	v := func(name string) string {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, "--version")
		cmd.Env = hubEnv()
		out, err := cmd.Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("jupyterhub %s, configurable-http-proxy %s", v(jupyterhub), v(chp))
}

// benchHub starts the hub and measures it as benchDspool does dspool.
func benchHub(ctx context.Context, dir string, n Sizes) *Side {
	t := &Side{Name: "jupyterhub"}
	t.Load1[0] = host.Load1()
	defer func() { t.Load1[1] = host.Load1() }()
	if os.Geteuid() != 0 {
		t.Error = "the JupyterHub peer needs root: it creates a user and spawns servers as it"
		return t
	}
	h, err := startHub(ctx, filepath.Join(dir, "jupyterhub"))
	if err != nil {
		t.Error = err.Error()
		host.Logf("jupyterhub: not measured: %v", err)
		return t
	}
	defer h.stop()
	t.Versions = hubVersions(ctx)
	fail := func(err error) *Side {
		t.Error = fmt.Sprintf("%v (the hub's log: %s; keep it with -keep)", err, h.log)
		return t
	}
	if s, err := h.serverState(ctx); err != nil {
		return fail(err)
	} else if s != "none" {
		if _, err := h.stopServer(ctx); err != nil {
			return fail(err)
		}
	}
	var login, loggedIn, stops []float64
	for i := range n.Runs {
		if ctx.Err() != nil {
			return t
		}
		d, li, body, err := h.loginToServer(ctx)
		if err != nil {
			return fail(fmt.Errorf("login -> server ready, run %d: %w", i+1, err))
		}
		login, loggedIn, t.Server = append(login, d.Seconds()), append(loggedIn, li.Seconds()), body
		_, _ = h.serverState(ctx) // its PID, for the cleanup
		host.Logf("jupyterhub: run %d: logged in %.3fs, -> first 200 through the proxy %.3fs", i+1, li.Seconds(), d.Seconds())
		if i < n.Runs-1 {
			d, err := h.stopServer(ctx)
			if err != nil {
				return fail(fmt.Errorf("stop, run %d: %w", i+1, err))
			}
			stops = append(stops, d.Seconds())
		}
	}
	t.Login, t.LoggedIn = newDist(login), newDist(loggedIn)
	direct, err := h.directTarget(ctx)
	if err != nil {
		return fail(err)
	}
	t.DirectTo = strings.TrimPrefix(direct, "http://") + " (no credentials)"
	// As jhub-bench.sh (wrk): no credentials. The server's /api and static
	// files need none, and the proxy checks none.
	out := cells(ctx, n, hubUser, []target{
		{name: "jupyterhub proxy", base: fmt.Sprintf("http://127.0.0.1:%d", h.port), hdr: http.Header{}},
		{name: "jupyterhub direct", base: direct, hdr: http.Header{}},
	})
	t.Proxy, t.Direct = out[0], out[1]
	d, err := h.stopServer(ctx)
	if err != nil {
		return fail(fmt.Errorf("stop: %w", err))
	}
	t.Stop = newDist(append(stops, d.Seconds()))
	return t
}

// command runs name args within 30s; its output goes into the error.
func command(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, host.Tail(out, 3))
	}
	return nil
}
