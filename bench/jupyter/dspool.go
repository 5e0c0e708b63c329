package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dspool/dspool/bench/internal/host"
)

// upProc is a running `dspool up` with one local node.
type upProc struct {
	*proc
	host.CLI // as the login `up` writes
	log      string
	port     int // its API and web front end, on 127.0.0.1
}

// startUp starts `dspool up` in dir and waits until it is logged in and
// its node is ready.
func startUp(ctx context.Context, bin, dir string) (*upProc, error) {
	port, err := host.FreePort()
	if err != nil {
		return nil, err
	}
	u := &upProc{CLI: host.CLI{Bin: bin, Config: filepath.Join(dir, "login.json")}, log: filepath.Join(dir, "up.log"), port: port}
	log, err := os.Create(u.log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, "up", "--data", filepath.Join(dir, "data"), "--nodes", "1",
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "--ssh-listen", "off",
		// Plain HTTP on loopback, as JupyterHub and jupyter_server are
		// measured: the proxies compared, not TLS.
		"--insecure-http",
		"--admin", benchAdmin, "--uid-base", strconv.Itoa(host.UIDBase()))
	cmd.Env = append(os.Environ(), "DSPOOL_CONFIG="+u.Config)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: a Ctrl-C at the terminal reaches this
	// program, which stops it; SIGINT should this program be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT}
	if u.proc, err = startProc("dspool up", cmd); err != nil {
		return nil, err
	}
	t0 := time.Now()
	var last error // the latest failure to list the nodes, retried
	err = host.Poll(ctx, time.Minute, 200*time.Millisecond, func() (bool, error) {
		if u.exited() {
			b, _ := os.ReadFile(u.log)
			return false, fmt.Errorf("`dspool up` exited: %s", host.Tail(b, 3))
		}
		// `dspool up` writes the login once it listens.
		var login struct{ Server, Token string }
		if b, err := os.ReadFile(u.Config); err != nil || json.Unmarshal(b, &login) != nil || login.Token == "" {
			return false, nil
		}
		ready, err := u.ReadyNodes(ctx, "")
		if err != nil {
			last = err
			return false, nil
		}
		return ready == 1, nil
	})
	if err != nil && last != nil {
		err = fmt.Errorf("%w; %w", err, last)
	}
	if err != nil {
		u.stop()
		return nil, fmt.Errorf("start `dspool up`: %w (its log: %s; keep it with -keep)", err, u.log)
	}
	host.Logf("dspool: up on 127.0.0.1:%d with a ready node, in %.1fs", port, time.Since(t0).Seconds())
	return u, nil
}

// stop sends the Ctrl-C that `dspool up` expects; it kills it after 45s.
func (u *upProc) stop() { u.proc.stop(syscall.SIGINT, 45*time.Second, false) }

// benchDspool builds dspool unless bin is given, starts `dspool up`, creates
// the bench user with a password and measures its Jupyter path as a
// browser uses it. Failures end up in the side's Error.
func benchDspool(ctx context.Context, bin, dir string, n Sizes) *Side {
	t := &Side{Name: "dspool"}
	t.Load1[0] = host.Load1()
	defer func() { t.Load1[1] = host.Load1() }()
	if bin == "" {
		var err error
		if bin, err = host.BuildDspool(ctx, dir); err != nil {
			t.Error = err.Error()
			return t
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if out, err := exec.CommandContext(vctx, bin, "version").Output(); err == nil {
		t.Versions = strings.TrimSpace(string(out))
	}
	cancel()
	// dspool's agents create the accounts of the users whose sessions they
	// run, and leave them: remove them once `up` has stopped (deferred
	// before its stop, so run after it), if they are new.
	for _, name := range []string{benchAdmin, benchUser} {
		if host.UserExists(name) {
			host.Logf("dspool: the account %s exists already (and stays): dspool's sessions need it to have dspool's uid", name)
			continue
		}
		defer func() {
			if host.UserExists(name) {
				host.RemoveUser(name)
			}
		}()
	}
	up, err := startUp(ctx, bin, dir)
	if err != nil {
		t.Error = err.Error()
		return t
	}
	defer up.stop()
	fail := func(err error) *Side {
		t.Error = fmt.Sprintf("%v (dspool's log: %s; keep it with -keep)", err, up.log)
		return t
	}
	password := secret(12)
	if _, err := up.Output(ctx, nil, "user", "create", benchUser); err != nil {
		return fail(err)
	}
	if _, err := up.Output(ctx, []byte(password+"\n"), "user", "passwd", benchUser); err != nil {
		return fail(err)
	}
	w := &web{base: fmt.Sprintf("http://127.0.0.1:%d", up.port), user: benchUser, password: password}

	// 1. Login -> server ready, n.Runs times; the server is stopped
	// between runs, and the last one stays for the throughput cells.
	var login, ready, loggedIn, stops []float64
	for i := range n.Runs {
		if ctx.Err() != nil {
			return t
		}
		r, err := w.loginToServer(ctx)
		if err != nil {
			return fail(fmt.Errorf("login -> server ready, run %d: %w", i+1, err))
		}
		login, ready = append(login, r.first200.Seconds()), append(ready, r.ready.Seconds())
		loggedIn = append(loggedIn, r.loggedIn.Seconds())
		t.Server = r.body
		host.Logf("dspool: run %d: logged in %.3fs, -> state ready %.3fs, -> first 200 through the proxy %.3fs",
			i+1, r.loggedIn.Seconds(), r.ready.Seconds(), r.first200.Seconds())
		if i < n.Runs-1 {
			d, err := w.stopServer(ctx)
			if err != nil {
				return fail(fmt.Errorf("stop, run %d: %w", i+1, err))
			}
			stops = append(stops, d.Seconds())
		}
	}
	t.Login, t.Ready, t.LoggedIn = newDist(login), newDist(ready), newDist(loggedIn)

	// 2. The floor of the above: the same jupyter_server started here as
	// the same user, n.Runs times, until it answers (no login, no proxy).
	// The last one stays for the throughput cells as the direct figure
	// (dspool's own listens on a port and with a secret this program
	// never sees).
	var js *jupyter
	defer func() { js.stop() }()
	var bare []float64
	for i := range n.Runs {
		if js, err = startJupyter(ctx, dir, benchUser); err != nil {
			return fail(fmt.Errorf("the direct jupyter_server: %w", err))
		}
		bare = append(bare, js.started.Seconds())
		if i < n.Runs-1 {
			js.stop()
		}
	}
	t.Bare = newDist(bare)
	t.DirectTo = fmt.Sprintf("127.0.0.1:%d (token)", js.port)
	out := cells(ctx, n, benchUser, []target{
		{name: "dspool proxy", base: w.base, hdr: http.Header{"Cookie": {sessionCookie + "=" + w.cookie}}},
		{name: "dspool direct", base: js.base, hdr: http.Header{"Authorization": {"token " + js.token}}},
	})
	t.Proxy, t.Direct = out[0], out[1]
	js.stop()
	d, err := w.stopServer(ctx)
	if err != nil {
		return fail(fmt.Errorf("stop: %w", err))
	}
	t.Stop = newDist(append(stops, d.Seconds()))
	return t
}

const sessionCookie = "dspool_session"

// web is a browser on dspool's front end: its login cookie and XSRF token.
type web struct {
	base, user, password string
	cookie, xsrf         string
}

type startRun struct {
	loggedIn time.Duration // POST /login and the page (with its XSRF token)
	ready    time.Duration // login -> the API says ready
	first200 time.Duration // login -> the first 200 of /user/NAME/api through the proxy
	body     string        // that answer
}

var xsrfMeta = regexp.MustCompile(`<meta name="xsrf" content="([^"]+)">`)

// browser is a client that does not follow redirects (they are checked).
var browser = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request with the login cookie (and the XSRF token, unless
// GET) and returns the status and body.
func (w *web) do(ctx context.Context, method, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: w.cookie})
	if method != "GET" {
		req.Header.Set("X-XSRF-Token", w.xsrf)
	}
	resp, err := browser.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

type notebookState struct {
	State   string `json:"state"`
	Message string `json:"message"`
}

func (w *web) state(ctx context.Context, method string, want int) (notebookState, error) {
	var s notebookState
	code, body, err := w.do(ctx, method, "/api/v1/notebook")
	if err != nil {
		return s, err
	}
	if code != want {
		return s, fmt.Errorf("%s /api/v1/notebook: %d: %s", method, code, host.Tail(body, 2))
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("%s /api/v1/notebook: %w", method, err)
	}
	return s, nil
}

// loginToServer logs in as a browser does (POST /login, then the page for
// its XSRF token), starts the server (POST /api/v1/notebook), polls its
// state until ready, then /user/NAME/api until it answers 200.
func (w *web) loginToServer(ctx context.Context) (r startRun, err error) {
	t0 := time.Now()
	form := url.Values{"username": {w.user}, "password": {w.password}}
	req, err := http.NewRequestWithContext(ctx, "POST", w.base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return r, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := browser.Do(req)
	if err != nil {
		return r, fmt.Errorf("POST /login: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	w.cookie = ""
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			w.cookie = c.Value
		}
	}
	if resp.StatusCode != http.StatusSeeOther || w.cookie == "" {
		return r, fmt.Errorf("POST /login: %s, cookie %q: %s", resp.Status, w.cookie, host.Tail(body, 2))
	}
	code, page, err := w.do(ctx, "GET", "/")
	if err != nil {
		return r, fmt.Errorf("GET /: %w", err)
	}
	m := xsrfMeta.FindSubmatch(page)
	if code != http.StatusOK || m == nil {
		return r, fmt.Errorf("GET /: %d, no XSRF token in the page", code)
	}
	w.xsrf = html.UnescapeString(string(m[1]))
	r.loggedIn = time.Since(t0)
	s, err := w.state(ctx, "POST", http.StatusAccepted)
	if err != nil {
		return r, err
	}
	err = host.Poll(ctx, 90*time.Second, pollEvery, func() (bool, error) {
		switch s.State {
		case "ready":
			return true, nil
		case "starting":
		default:
			return false, fmt.Errorf("the server is %s: %s", s.State, s.Message)
		}
		s, err = w.state(ctx, "GET", http.StatusOK)
		return false, err
	})
	if err != nil {
		return r, fmt.Errorf("waiting for state ready: %w", err)
	}
	r.ready = time.Since(t0)
	var last string
	err = host.Poll(ctx, 30*time.Second, pollEvery, func() (bool, error) {
		code, body, err := w.do(ctx, "GET", "/user/"+w.user+"/api")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d: %s", code, host.Tail(body, 1))
		r.body = strings.TrimSpace(string(body))
		return code == http.StatusOK, nil
	})
	if err != nil {
		return r, fmt.Errorf("GET /user/%s/api: %w (last: %s)", w.user, err, last)
	}
	r.first200 = time.Since(t0)
	return r, nil
}

// stopServer stops the server (DELETE /api/v1/notebook) and waits until
// the API says it is stopped.
func (w *web) stopServer(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	s, err := w.state(ctx, "DELETE", http.StatusOK)
	if err != nil {
		return 0, err
	}
	err = host.Poll(ctx, 60*time.Second, pollEvery, func() (bool, error) {
		if s.State == "stopped" || s.State == "failed" {
			return true, nil
		}
		s, err = w.state(ctx, "GET", http.StatusOK)
		return false, err
	})
	return time.Since(t0), err
}
