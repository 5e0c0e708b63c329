package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// notebooks are users' Jupyter servers. Each runs in its user's session
// (sharing the node and reservation with their SSH connections), listens on
// the node's loopback, and is reached only through the control plane at
// /user/NAME/, which adds the server's secret: browsers never see it.
type notebooks struct {
	s  *Server
	mu sync.Mutex
	by map[string]*notebook // by user
}

type notebook struct {
	rec dspool.Notebook // guarded by notebooks.mu
	// lease is set, under notebooks.mu, once the server has a node; until
	// then cancel stops the wait for one.
	lease  *Lease
	cancel context.CancelFunc
	token  string
	proxy  *httputil.ReverseProxy
	idle   time.Duration // the pool's jupyter_idle
	// cred is the credential that started it ("token 12", "web login"):
	// revoking that token stops it.
	cred string

	traffic atomic.Int64 // unix nanoseconds of the last byte through the proxy
	// Guarded by notebooks.mu: the last use seen, the cpu of the last
	// sample and when to sample next.
	lastUse   time.Time
	lastCPU   float64
	lastCheck time.Time
	nextCheck time.Time
}

func newNotebooks(s *Server) *notebooks {
	return &notebooks{s: s, by: map[string]*notebook{}}
}

func (nbs *notebooks) get(user string) (*notebook, dspool.Notebook) {
	nbs.mu.Lock()
	defer nbs.mu.Unlock()
	nb := nbs.by[user]
	if nb == nil {
		return nil, dspool.Notebook{User: user, State: dspool.NotebookStopped}
	}
	return nb, nb.rec
}

func (nbs *notebooks) set(nb *notebook, f func(*dspool.Notebook)) {
	nbs.mu.Lock()
	f(&nb.rec)
	nbs.mu.Unlock()
}

// start starts the user's Jupyter server unless one is starting or ready;
// cred is the credential that asks.
func (nbs *notebooks) start(ctx context.Context, u *dspool.User, pool, profile, remote, base, cred string) (dspool.Notebook, error) {
	nbs.mu.Lock()
	if nb := nbs.by[u.Name]; nb != nil && (nb.rec.State == dspool.NotebookStarting || nb.rec.State == dspool.NotebookReady) {
		rec := nb.rec
		nbs.mu.Unlock()
		if pool != "" && pool != rec.Pool {
			return rec, dspool.Errorf(dspool.EConflict, "your Jupyter server already runs in pool %s: stop it (`dspool notebook stop`) to start one in pool %s", rec.Pool, pool)
		}
		return rec, nil
	}
	nbs.mu.Unlock()
	p, err := nbs.s.interactivePool(ctx, pool)
	if err != nil {
		return dspool.Notebook{}, err
	}
	z, err := p.SessionSize(profile)
	if err != nil {
		return dspool.Notebook{}, err
	}
	url := base + "/user/" + u.Name + "/"
	lease, err := nbs.s.placeSession(ctx, u, p, z, remote, dspool.SessionJupyter)
	if nr := (noRoom{}); errors.As(err, &nr) && nbs.s.scaler.canWait(p) {
		// The pool gets a node: wait for it in the background; the state
		// says how the wait goes.
		wctx, cancel := context.WithCancel(context.Background())
		nb := &notebook{cancel: cancel, cred: cred, rec: dspool.Notebook{User: u.Name, Pool: p.Name, State: dspool.NotebookStarting,
			Message: "waiting for a node in pool " + p.Name, URL: url, StartedAt: nbs.s.cfg.Now().UTC(), StartedBy: cred}}
		if rec, won := nbs.claim(u.Name, nb); !won {
			cancel()
			return rec, nil
		}
		go func() {
			defer cancel()
			lease, err := nbs.s.awaitSession(wctx, u, p, z, remote, dspool.SessionJupyter, func(msg string) {
				nbs.set(nb, func(r *dspool.Notebook) {
					if r.State == dspool.NotebookStarting {
						r.Message = msg
					}
				})
			})
			if err != nil {
				nbs.set(nb, func(r *dspool.Notebook) {
					if r.State == dspool.NotebookStarting {
						r.State, r.Message = dspool.NotebookFailed, dspool.Message(err)
					}
				})
				return
			}
			nbs.begin(nb, lease, p)
		}()
		return nb.rec, nil
	}
	if err != nil {
		return dspool.Notebook{}, err
	}
	nb := &notebook{cred: cred, rec: dspool.Notebook{User: u.Name, Pool: p.Name, State: dspool.NotebookStarting, URL: url,
		StartedAt: nbs.s.cfg.Now().UTC(), StartedBy: cred}}
	if rec, won := nbs.claim(u.Name, nb); !won {
		lease.Close() // a concurrent start won
		return rec, nil
	}
	return nbs.begin(nb, lease, p), nil
}

// claim makes nb the user's server unless another is starting or ready; it
// returns that one when it is.
func (nbs *notebooks) claim(user string, nb *notebook) (dspool.Notebook, bool) {
	nbs.mu.Lock()
	defer nbs.mu.Unlock()
	if cur := nbs.by[user]; cur != nil && (cur.rec.State == dspool.NotebookStarting || cur.rec.State == dspool.NotebookReady) {
		return cur.rec, false
	}
	nbs.by[user] = nb
	return nb.rec, true
}

// begin starts the server of nb in the session of lease.
func (nbs *notebooks) begin(nb *notebook, lease *Lease, p *dspool.Pool) dspool.Notebook {
	settings := p.SessionSettings()
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	nbs.mu.Lock()
	if nb.rec.State != dspool.NotebookStarting { // stopped while it waited
		nbs.mu.Unlock()
		lease.CloseWith("its Jupyter server was stopped")
		return nb.rec
	}
	nb.lease, nb.token, nb.idle = lease, hex.EncodeToString(tok), time.Duration(settings.JupyterIdle)
	nb.rec.Node, nb.rec.NodeName, nb.rec.Session, nb.rec.Message = lease.Node(), lease.NodeName(), lease.ID(), ""
	nb.proxy = nbs.proxy(nb)
	rec := nb.rec
	nbs.mu.Unlock()
	spec := api.NotebookSpec{SessionSetup: lease.setup, Command: settings.Jupyter, BaseURL: "/user/" + nb.rec.User + "/",
		Token: nb.token, Timeout: settings.JupyterTimeout}
	go nbs.launch(nb, spec)
	go nbs.watch(nb)
	return rec
}

// launch asks the node to start the server and records how it went.
func (nbs *notebooks) launch(nb *notebook, spec api.NotebookSpec) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(spec.Timeout)+15*time.Second)
	defer cancel()
	var started api.NotebookStarted
	err := nbs.s.hub.callJSON(ctx, nb.lease.Node(), "/sessions/notebook", spec, &started)
	now := nbs.s.cfg.Now().UTC()
	if err != nil {
		nbs.s.log.Warn("jupyter server did not start", "user", nb.rec.User, "err", err)
		failed := false
		nbs.set(nb, func(r *dspool.Notebook) {
			if r.State == dspool.NotebookStarting { // not stopped meanwhile (which gave the lease back)
				r.State, r.Message, failed = dspool.NotebookFailed, err.Error(), true
			}
		})
		if failed {
			nb.lease.CloseWith("its Jupyter server did not start")
		}
		return
	}
	nbs.set(nb, func(r *dspool.Notebook) {
		if r.State == dspool.NotebookStarting {
			r.State, r.ReadyAt = dspool.NotebookReady, &now
			nb.lastUse, nb.lastCheck, nb.nextCheck = now, now, now
		}
	})
	nbs.s.log.Info("jupyter server ready", "user", nb.rec.User, "node", nb.rec.NodeName, "in", now.Sub(nb.rec.StartedAt).Round(time.Millisecond))
}

// watch marks the server stopped when its session ends from outside (a
// killed session, a lost node).
func (nbs *notebooks) watch(nb *notebook) {
	<-nb.lease.Done()
	nbs.set(nb, func(r *dspool.Notebook) {
		if r.State == dspool.NotebookStarting || r.State == dspool.NotebookReady {
			r.State, r.Message = dspool.NotebookStopped, nb.lease.Reason()
		}
	})
}

// stop stops the user's server and gives its session lease back.
func (nbs *notebooks) stop(ctx context.Context, user string) dspool.Notebook {
	nbs.mu.Lock()
	nb := nbs.by[user]
	nbs.mu.Unlock()
	if nb == nil {
		_, rec := nbs.get(user)
		return rec
	}
	return nbs.stopWith(ctx, nb, "stopped by the user")
}

func (nbs *notebooks) stopWith(ctx context.Context, nb *notebook, reason string) dspool.Notebook {
	nbs.mu.Lock()
	if nb.rec.State == dspool.NotebookStopped || nb.rec.State == dspool.NotebookFailed {
		rec := nb.rec
		nbs.mu.Unlock()
		return rec
	}
	nb.rec.State, nb.rec.Message = dspool.NotebookStopped, reason
	nb.rec.StopsAt = nil
	rec := nb.rec
	user := nb.rec.User
	lease := nb.lease
	nbs.mu.Unlock()
	if lease == nil { // still waiting for a node
		nb.cancel()
		return rec
	}
	if err := nbs.s.hub.call(ctx, nb.lease.Node(), "/sessions/notebook/stop", api.NotebookRef{Session: nb.lease.ID()}); err != nil {
		nbs.s.log.Debug("stop jupyter server", "user", user, "err", err)
	}
	nb.lease.CloseWith("its Jupyter server " + reason)
	return rec
}

// proxy forwards to the server through a stream to its node.
func (nbs *notebooks) proxy(nb *notebook) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: "notebook"}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			// Jupyter compares Origin with Host: the host the browser
			// asked for, through a load balancer too.
			pr.Out.Host = nbs.s.client(pr.In).Host
			// dspool's credentials stay here; the server's own secret goes.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("Authorization", "token "+nb.token)
			stripCookies(pr.Out, "dspool")
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, _, err := nbs.s.hub.upgrade(ctx, nb.lease.Node(), "/sessions/notebook/connect", api.NotebookRef{Session: nb.lease.ID()})
				if err != nil {
					return nil, err
				}
				return &trafficConn{Conn: c, nb: nb}, nil
			},
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			nbs.s.fail(w, r, dspool.Errorf(dspool.EUnavailable, "your Jupyter server on node %s does not answer: %v; see `dspool notebook status`", nb.rec.NodeName, err))
		},
	}
}

// trafficConn counts what passes to and from a Jupyter server (requests,
// answers and websocket frames alike) as use of the server and its session.
type trafficConn struct {
	net.Conn
	nb *notebook
}

func (c *trafficConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.nb.traffic.Store(time.Now().UnixNano())
		c.nb.lease.Out(n)
	}
	return n, err
}

func (c *trafficConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.nb.traffic.Store(time.Now().UnixNano())
		c.nb.lease.In(n)
	}
	return n, err
}

// cullLoop stops Jupyter servers that went unused for their pool's idle
// period: no kernel busy, no traffic through the proxy, and no cpu used by
// the server's process tree. A busy kernel with no browser attached keeps
// its server.
func (nbs *notebooks) cullLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := nbs.s.cfg.Now()
		nbs.mu.Lock()
		var due []*notebook
		for _, nb := range nbs.by {
			if nb.rec.State == dspool.NotebookReady && !now.Before(nb.nextCheck) {
				due = append(due, nb)
			}
		}
		nbs.mu.Unlock()
		for _, nb := range due {
			nbs.check(ctx, nb, now)
		}
	}
}

// check samples a server's use and stops it when it has been idle too long.
func (nbs *notebooks) check(ctx context.Context, nb *notebook, now time.Time) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var act api.NotebookActivity
	err := nbs.s.hub.callJSON(cctx, nb.lease.Node(), "/sessions/notebook/activity", api.NotebookRef{Session: nb.lease.ID()}, &act)
	cancel()
	gpus := nbs.s.hub.gpusBusy(nb.lease.Node(), nb.lease.rec.GPUIndices) // work on its GPUs is use
	nbs.mu.Lock()
	every := min(max(nb.idle/6, time.Second), 10*time.Second)
	nb.nextCheck = now.Add(every)
	if err == nil {
		// A kernel at work, or more cpu than an idle server and kernels
		// use (1% of one cpu), is use.
		wall := now.Sub(nb.lastCheck).Seconds()
		if act.KernelsBusy > 0 || gpus || wall > 0 && act.CPUSeconds-nb.lastCPU > 0.01*wall {
			nb.lastUse = now
		}
		nb.lastCPU, nb.lastCheck = act.CPUSeconds, now
	}
	if t := time.Unix(0, nb.traffic.Load()); t.After(nb.lastUse) {
		nb.lastUse = t
	}
	since, stops := nb.lastUse.UTC(), nb.lastUse.Add(nb.idle).UTC()
	nb.rec.IdleSince, nb.rec.StopsAt = &since, &stops
	cull := err == nil && !now.Before(stops) && nb.rec.State == dspool.NotebookReady
	nbs.mu.Unlock()
	var refusal *agentRefusal
	if errors.As(err, &refusal) && refusal.status == http.StatusGone {
		nbs.stopWith(ctx, nb, "exited on its own (Jupyter's Quit, or a crash)")
		return
	}
	if cull {
		reason := fmt.Sprintf("stopped after %s unused (no busy kernel, no traffic, no cpu since %s)", nb.idle, since.Format(time.RFC3339))
		nbs.s.log.Info("jupyter server culled", "user", nb.rec.User, "idle", nb.idle, "since", since)
		nbs.stopWith(ctx, nb, reason)
	}
}

// stripCookies removes the cookies whose names start with prefix.
func stripCookies(r *http.Request, prefix string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if !strings.HasPrefix(c.Name, prefix) {
			r.AddCookie(c)
		}
	}
}

// serveUser proxies /user/NAME/... to NAME's Jupyter server. Only NAME
// reaches it: anyone else, admins included, gets a 404.
func (s *Server) serveUser(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r)
	name := r.PathValue("name")
	notFound := dspool.Errorf(dspool.ENotFound, "no Jupyter server of yours at /user/%s/: start yours with `dspool notebook start`", name)
	if u.Name != name {
		s.fail(w, r, notFound)
		return
	}
	nb, rec := s.notebooks.get(name)
	if nb == nil || rec.State != dspool.NotebookReady {
		s.fail(w, r, dspool.Errorf(dspool.ENotFound, "your Jupyter server is %s: start it with `dspool notebook start`", rec.State))
		return
	}
	rc := http.NewResponseController(w)
	if isUpgrade(r) {
		if !s.sameOrigin(r) {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "a websocket from origin %q is not allowed here", r.Header.Get("Origin")))
			return
		}
		// A kernel's websocket lives for hours: the server's read timeout
		// is for requests, not for the connection it becomes.
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	} else {
		// Uploads come through here too.
		_ = rc.SetReadDeadline(time.Now().Add(10 * time.Minute))
	}
	nb.proxy.ServeHTTP(w, r)
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// baseURL is this server as the client reached it.
func (s *Server) baseURL(r *http.Request) string {
	c := s.client(r)
	return c.Scheme + "://" + c.Host
}

func (s *Server) startNotebook(w http.ResponseWriter, r *http.Request) {
	var req api.NotebookStart
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rec, err := s.notebooks.start(r.Context(), userFrom(r), req.Pool, req.Profile, s.client(r).Addr, s.baseURL(r), credFrom(r).label())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, rec)
}

func (s *Server) notebookStatus(w http.ResponseWriter, r *http.Request) {
	_, rec := s.notebooks.get(userFrom(r).Name)
	if rec.URL == "" {
		rec.URL = s.baseURL(r) + "/user/" + rec.User + "/"
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) stopNotebook(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.notebooks.stop(r.Context(), userFrom(r).Name))
}

// callJSON posts body to an agent and decodes its JSON answer into out; an
// answer other than 2xx is an error carrying the agent's message.
func (h *hub) callJSON(ctx context.Context, node, path string, body, out any) error {
	ac := h.conn(node)
	if ac == nil {
		return fmt.Errorf("node %s is not connected", node)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://agent"+path, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: ac.client.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		return &agentRefusal{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// toLoginPage sends a browser that opens /user/NAME/... to the pool's page
// when it has no login, or when NAME's server (its own) is not running:
// the page logs in, and starts it. Programs (no text/html in Accept, or an
// Authorization header) get the API's JSON errors instead.
func (s *Server) toLoginPage(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		browser := (r.Method == "GET" || r.Method == "HEAD") && r.Header.Get("Authorization") == "" &&
			strings.Contains(r.Header.Get("Accept"), "text/html") && !isUpgrade(r)
		if browser {
			u, _, err := s.caller(r)
			if err != nil {
				// The login comes back here.
				http.Redirect(w, r, "/?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if _, rec := s.notebooks.get(u.Name); u.Name == r.PathValue("name") && rec.State != dspool.NotebookReady {
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
		}
		next(w, r)
	}
}
