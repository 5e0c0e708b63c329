package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// SSH gateways in processes of their own (`dspool gateway`,
// docs/decisions/0019-ssh-gateway-apart.md). A gateway authenticates logins
// and opens sessions through these routes; each of its SSH connections
// holds a ConnLease here, as one of the in-process gateway's does. The
// bytes of a channel go from the node straight to the gateway (api.Dial).
// The gateway's heartbeat lists its connections: it takes them up again
// after a restart, and its reply says which must end. A gateway silent for
// the node grace has its connections closed.

// gateways are the gateways' connections, by gateway and connection id.
type gateways struct {
	s  *Server
	mu sync.Mutex
	gw map[string]*gatewayState
}

type gatewayState struct {
	seen  time.Time
	conns map[string]*gatewayConn
}

type gatewayConn struct {
	lease  *ConnLease
	opened time.Time
}

func newGateways(s *Server) *gateways { return &gateways{s: s, gw: map[string]*gatewayState{}} }

// state returns gateway id's state, made on first use; g.mu is held.
func (g *gateways) state(id string) *gatewayState {
	st := g.gw[id]
	if st == nil {
		st = &gatewayState{conns: map[string]*gatewayConn{}}
		g.gw[id] = st
	}
	st.seen = g.s.cfg.Now()
	return st
}

// lease returns the lease of a gateway's connection.
func (g *gateways) lease(id, conn string) (*ConnLease, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.gw[id]; st != nil {
		if c := st.conns[conn]; c != nil {
			return c.lease, nil
		}
	}
	return nil, dspool.Errorf(dspool.ENotFound, "gateway %s holds no connection %s here: it ended, or the control plane restarted and has not had the gateway's heartbeat yet; try again", id, conn)
}

// gatewayConfig answers GET /api/v1/gateway/config.
func (s *Server) gatewayConfig(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.SSHHostKey) == 0 {
		s.fail(w, r, dspool.Errorf(dspool.EUnavailable, "this control plane has no SSH host key to hand to gateways: it is made at the first start of `dspool server`; restart it"))
		return
	}
	s.audit(r, "", dspool.AuditGatewayConfig, "ssh host key", dspool.AuditSuccess, "a gateway took the SSH host key")
	writeJSON(w, http.StatusOK, api.GatewayConfig{HostKey: string(s.cfg.SSHHostKey), Ciphers: s.cfg.SSHCiphers,
		PasswordAuth: s.cfg.SSHPasswordAuth, Heartbeat: dspool.Duration(s.cfg.Heartbeat)})
}

// gatewayAuth answers POST /api/v1/gateway/auth.
func (s *Server) gatewayAuth(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayAuth
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	login := dspool.Login{User: req.User, Pool: req.Pool}
	var u *dspool.User
	var err error
	switch {
	case req.Fingerprint != "" && req.Password == "":
		u, err = s.Authenticate(r.Context(), login, req.Fingerprint)
	case req.Password != "" && req.Fingerprint == "":
		if !s.cfg.SSHPasswordAuth {
			err = dspool.Errorf(dspool.EUnauthorized, "password logins are off (ssh_password_auth)")
			break
		}
		u, err = s.AuthenticatePassword(r.Context(), login, req.Password, req.Remote)
	default:
		s.fail(w, r, dspool.Invalid("fingerprint", "give a key's fingerprint or a password, one of them"))
		return
	}
	var out api.GatewayAuthReply
	if u != nil {
		out.User = u
	}
	if err != nil {
		var de *dspool.Error
		if !errors.As(err, &de) {
			s.fail(w, r, err) // the store failed: not a refusal
			return
		}
		out.Refused = de
		var throttled interface{ RetryAfter() time.Duration }
		if errors.As(err, &throttled) {
			out.RetryAfter = dspool.Duration(throttled.RetryAfter())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// gatewayOpen answers POST /api/v1/gateway/sessions with a stream of
// lines: progress while the session waits for a node, then the session.
func (s *Server) gatewayOpen(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayOpen
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Gateway == "" || req.Conn == "" {
		s.fail(w, r, dspool.Invalid("conn", "a gateway's connection needs the gateway's id and its own"))
		return
	}
	u, err := s.db.User(r.Context(), req.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	send := func(e api.GatewayOpenEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
		_ = rc.Flush()
	}
	l, err := s.OpenSession(r.Context(), u, req.Pool, req.Remote, gatewayCredential(req.How), func(p string) { send(api.GatewayOpenEvent{Progress: p}) })
	if err != nil {
		de := &dspool.Error{Code: dspool.EInternal, Message: err.Error()}
		errors.As(err, &de)
		send(api.GatewayOpenEvent{Error: de})
		return
	}
	g := s.gateways
	g.mu.Lock()
	st := g.state(req.Gateway)
	if old := st.conns[req.Conn]; old != nil {
		g.mu.Unlock()
		l.Close()
		send(api.GatewayOpenEvent{Error: dspool.Errorf(dspool.EConflict, "gateway %s already holds connection %s", req.Gateway, req.Conn)})
		return
	}
	st.conns[req.Conn] = &gatewayConn{lease: l, opened: s.cfg.Now()}
	g.mu.Unlock()
	if r.Context().Err() != nil {
		g.close(req.Gateway, req.Conn) // the gateway gave up on it
		return
	}
	send(api.GatewayOpenEvent{Session: &api.GatewayConn{ID: l.ID(), Node: l.Node(), NodeName: l.NodeName(), Landed: l.Landed()}})
}

// gatewayCredential is the credential of how a gateway's connection
// authenticated: a key's fingerprint, or "password".
func gatewayCredential(how string) string {
	if how == "password" {
		return PasswordCredential
	}
	return KeyCredential(how)
}

// gatewayChannel answers POST /api/v1/gateway/channel: the node opens the
// channel's connections to the gateway, and this answers once it has.
func (s *Server) gatewayChannel(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayChannel
	s.gatewayAsk(w, r, &req, func() (string, string) { return req.Gateway, req.Conn }, "/sessions/channel", func(l *ConnLease) any {
		return api.ChannelRequest{SessionSetup: l.setup, Kind: req.Kind, Command: req.Command, PTY: req.PTY, Env: req.Env,
			Client: req.Client, Server: req.Server, Data: "gateway", Dial: &req.Dial}
	})
}

// gatewayForward answers POST /api/v1/gateway/forward.
func (s *Server) gatewayForward(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayForward
	s.gatewayAsk(w, r, &req, func() (string, string) { return req.Gateway, req.Conn }, "/sessions/forward", func(l *ConnLease) any {
		return api.ForwardRequest{SessionSetup: l.setup, Host: req.Host, Port: req.Port, Dial: &req.Dial}
	})
}

// gatewayAsk reads a gateway's request into req, finds the lease of the
// connection it names, and sends the node of its session what body makes
// of it at path; it answers 204 once the node has.
func (s *Server) gatewayAsk(w http.ResponseWriter, r *http.Request, req any, conn func() (string, string), path string, body func(*ConnLease) any) {
	if err := readJSON(r, req); err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.gateways.lease(conn())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hdr, err := s.hub.ask(r.Context(), l.rec.Node, path, body(l))
	if err != nil {
		s.fail(w, r, nodeError(l.rec.NodeName, err))
		return
	}
	if m := hdr.Get(api.DataModeHeader); m != "" {
		w.Header().Set(api.DataModeHeader, m)
	}
	w.WriteHeader(http.StatusNoContent)
}

// nodeError is an agent's refusal as the gateway's user is to see it, or
// the broken link to the node.
func nodeError(node string, err error) error {
	if IsRefusal(err) {
		return dspool.Errorf(dspool.EInvalid, "%v", err)
	}
	return dspool.Errorf(dspool.EUnavailable, "node %s: %v", node, err)
}

// gatewayHeartbeat answers POST /api/v1/gateway/heartbeat: the counters of
// the connections the gateway reports; the connections it no longer
// reports close; those it reports that this run does not know (it
// restarted) join their sessions again, or end when their session is gone.
func (s *Server) gatewayHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayHeartbeat
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Gateway == "" {
		s.fail(w, r, dspool.Invalid("gateway", "a heartbeat names its gateway"))
		return
	}
	g := s.gateways
	now := s.cfg.Now()
	var reply api.GatewayHeartbeatReply
	reported := map[string]bool{}
	var unknown []api.GatewayConnActivity
	var gone []*ConnLease
	g.mu.Lock()
	st := g.state(req.Gateway)
	for _, c := range req.Conns {
		reported[c.Conn] = true
		gc := st.conns[c.Conn]
		if gc == nil {
			unknown = append(unknown, c)
			continue
		}
		gc.lease.In(int(c.In))
		gc.lease.Out(int(c.Out))
		if closed(gc.lease.done) {
			// It stays held until the gateway closes it: the session's
			// end waits for that (told), so that the user reads why.
			reply.End = append(reply.End, connEnd(c.Conn, gc.lease))
		}
	}
	// A connection opened since the gateway made this heartbeat is not in
	// it yet.
	settle := 2 * s.cfg.Heartbeat
	for id, gc := range st.conns {
		if !reported[id] && now.Sub(gc.opened) > settle {
			delete(st.conns, id)
			gone = append(gone, gc.lease)
		}
	}
	g.mu.Unlock()
	for _, l := range gone {
		l.Close()
	}
	for _, c := range unknown {
		l, why := s.rejoinSession(r.Context(), c)
		if l == nil {
			reply.End = append(reply.End, api.GatewayConnEnd{Conn: c.Conn, Reason: why})
			continue
		}
		g.mu.Lock()
		st := g.state(req.Gateway)
		if st.conns[c.Conn] == nil {
			st.conns[c.Conn] = &gatewayConn{lease: l, opened: now}
			l = nil
		}
		g.mu.Unlock()
		if l != nil {
			l.Close() // a heartbeat beside this one took it up
		}
	}
	writeJSON(w, http.StatusOK, reply)
}

func connEnd(conn string, l *ConnLease) api.GatewayConnEnd {
	return api.GatewayConnEnd{Conn: conn, Reason: l.Reason(), CredentialGone: l.CredentialGone(), UserDisabled: l.UserDisabled()}
}

// rejoinSession takes a gateway's connection up again after a restart: it
// joins its session when that is still live and its user's, or says why
// the connection must end.
func (s *Server) rejoinSession(ctx context.Context, c api.GatewayConnActivity) (*ConnLease, string) {
	sm := s.sessions
	sm.mu.Lock()
	l := sm.live[c.Session]
	if l == nil || l.ended || l.rec.User != c.User {
		sm.mu.Unlock()
		return nil, "the session ended while the control plane restarted; log in again for a new one"
	}
	l.join()
	sm.mu.Unlock()
	l.In(int(c.In))
	l.Out(int(c.Out))
	s.log.Info("ssh connection taken up after a restart", "session", l.ID(), "user", c.User, "node", l.NodeName())
	return s.connect(ctx, l, c.User, gatewayCredential(c.How)), ""
}

// gatewayAudit answers POST /api/v1/gateway/audit: a gateway's entry of
// the audit log (its logins and their refusals).
func (s *Server) gatewayAudit(w http.ResponseWriter, r *http.Request) {
	var e dspool.AuditEntry
	if err := readJSON(r, &e); err != nil {
		s.fail(w, r, err)
		return
	}
	if e.Action != dspool.AuditLoginSSH {
		s.fail(w, r, dspool.Invalid("action", "a gateway records SSH logins (%s) alone, not %q", dspool.AuditLoginSSH, e.Action))
		return
	}
	e.ID = 0
	s.Audit(r.Context(), e)
	w.WriteHeader(http.StatusNoContent)
}

// gatewayClose answers POST /api/v1/gateway/close: connections that
// ended at the gateway give their leases back.
func (s *Server) gatewayClose(w http.ResponseWriter, r *http.Request) {
	var req api.GatewayClose
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	for _, c := range req.Conns {
		s.gateways.close(req.Gateway, c)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *gateways) close(id, conn string) {
	g.mu.Lock()
	var l *ConnLease
	if st := g.gw[id]; st != nil {
		if c := st.conns[conn]; c != nil {
			l = c.lease
			delete(st.conns, conn)
		}
	}
	g.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

// told waits until no gateway holds a connection of l (each took its end
// in a heartbeat, told its user and closed it), for at most wait.
func (g *gateways) told(l *Lease, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for g.holds(l) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// holds reports whether a gateway that answers (its heartbeat came within
// two beats) holds a connection of l.
func (g *gateways) holds(l *Lease) bool {
	now := g.s.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, st := range g.gw {
		if now.Sub(st.seen) > 2*g.s.cfg.Heartbeat {
			continue
		}
		for _, c := range st.conns {
			if c.lease.Lease == l {
				return true
			}
		}
	}
	return false
}

// sweep closes the connections of gateways silent for longer than grace:
// the gateway is gone, and its connections with it.
func (g *gateways) sweep(grace time.Duration) {
	now := g.s.cfg.Now()
	var gone []*ConnLease
	var ids []string
	g.mu.Lock()
	for id, st := range g.gw {
		if now.Sub(st.seen) <= grace {
			continue
		}
		for _, c := range st.conns {
			gone = append(gone, c.lease)
		}
		delete(g.gw, id)
		ids = append(ids, id)
	}
	g.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		g.s.log.Warn("an SSH gateway went silent; its connections are closed", "gateway", id, "silent_for", grace)
	}
	for _, l := range gone {
		l.Close()
	}
}

// sweepLoop runs sweep every heartbeat.
func (g *gateways) sweepLoop(ctx context.Context) {
	t := time.NewTicker(g.s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.sweep(g.s.cfg.NodeGrace)
		}
	}
}
