package server

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/store"
)

// Sessions outlive the control plane
// (docs/decisions/0017-sessions-outlive-the-control-plane.md): at start the
// sessions the store has active are taken up again, pending until their
// node's agent reports them; a report takes up the Jupyter server with the
// token the agent gives, a node that reports without them ends them, and a
// node lost past its grace ends them as any lost node does.

// join adds a connection to l; the first after a restart takes over the
// restart's hold. sm.mu is held.
func (l *Lease) join() {
	if l.held {
		l.held = false
		return
	}
	l.conns++
}

// connections is l's count of connections, less the restart's hold. sm.mu
// is held.
func (l *Lease) connections() int {
	if l.held {
		return l.conns - 1
	}
	return l.conns
}

// ShuttingDown is called as the control plane stops, before it closes its
// connections: closing them leaves their sessions active in the store and
// on their nodes, for the next run to take up.
func (s *Server) ShuttingDown() { s.sessions.stopping.Store(true) }

// recoverSessions takes up the sessions the store has active: those of the
// previous run. One that cannot be taken up (its user, pool or node is gone)
// ends.
func (s *Server) recoverSessions(ctx context.Context) {
	defer s.sessions.tookUp()
	recs, err := s.db.Sessions(ctx, store.SessionFilter{Active: true, Limit: 1 << 30})
	if err != nil {
		s.log.Error("take up the sessions of the previous run", "err", err)
		return
	}
	taken := 0
	for _, rec := range recs {
		why, err := s.recoverSession(ctx, rec)
		if err != nil {
			// A store that fails now fails the next read too: keep the
			// row, a later start takes it up.
			s.log.Error("take up a session of the previous run", "session", rec.ID, "err", err)
			continue
		}
		if why != "" {
			a := store.SessionActivity{ID: rec.ID, LastActivity: rec.LastActivity, BytesIn: rec.BytesIn, BytesOut: rec.BytesOut}
			if err := s.db.EndSession(ctx, a, why, s.cfg.Now()); err != nil {
				s.log.Error("record session end", "session", rec.ID, "err", err)
			}
			s.log.Info("session ended", "session", rec.ID, "user", rec.User, "node", rec.Node, "reason", why)
			continue
		}
		taken++
	}
	if taken > 0 {
		s.log.Info("took up the sessions of the previous run; each waits for its node to report it", "sessions", taken)
	}
}

// recoverSession takes up one session; it returns why it cannot be (it then
// ends), or an error of the store.
func (s *Server) recoverSession(ctx context.Context, rec *dspool.Session) (string, error) {
	u, err := s.db.User(ctx, rec.User)
	if dspool.ErrorCode(err) == dspool.ENotFound || err == nil && u.Disabled {
		return "its user was removed or disabled while the control plane was down", nil
	}
	if err != nil {
		return "", err
	}
	p, err := s.hub.pool(ctx, rec.Pool)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return fmt.Sprintf("its pool %s was removed", rec.Pool), nil
	}
	if err != nil {
		return "", err
	}
	n, err := s.db.Node(ctx, rec.Node)
	if dspool.ErrorCode(err) == dspool.ENotFound || err == nil && (n.State == dspool.NodeLost || n.State == dspool.NodeGone) {
		return fmt.Sprintf("its node %s was lost or left", rec.NodeName), nil
	}
	if err != nil {
		return "", err
	}
	team, err := s.recoveredTeam(ctx, u, p)
	if err != nil {
		return "", err
	}
	sm := s.sessions
	settings := p.SessionSettings()
	l := &Lease{sm: sm, rec: *rec, team: team, conns: 1, pending: true, held: true, done: make(chan struct{}),
		holdUntil: s.cfg.Now().Add(time.Duration(settings.JupyterIdle)),
		setup: api.SessionSetup{Session: rec.ID, Pool: p.Name, User: api.RunAs{Name: u.Name, UID: u.UID, GID: u.GID},
			Home: share.Home(u.Name), Notebooks: share.Notebooks(u.Name), CPUs: rec.CPUs, Memory: rec.Memory, Forwarding: settings.Forwarding,
			Secrets:   s.sessionSecrets(ctx, u.Name, fmt.Sprintf("session %s on node %s", rec.ID, rec.NodeName)),
			WorkToken: s.workTokens.session(rec.ID, u.Name), GPUs: rec.GPUIndices},
		idle: time.Duration(settings.Idle)}
	l.setup.Image, l.setup.ImageFile, l.setup.ImageNetwork = sessionImage(p)
	l.last.Store(rec.LastActivity.UnixNano())
	l.saved.Store(rec.LastActivity.UnixNano())
	l.in.Store(rec.BytesIn)
	l.out.Store(rec.BytesOut)
	sm.mu.Lock()
	sm.live[rec.ID] = l
	sm.byUser[sessionKey(u.Name, p.Name, rec.Size)] = l
	sm.mu.Unlock()
	sm.limitTime(l)
	if rec.Kind == dspool.SessionJupyter {
		s.notebooks.awaitReport(l, settings.JupyterIdle)
	}
	return "", nil
}

// recoveredTeam is whose limits a session taken up counts against: its
// user's first team granted the pool. The session already runs: no limit
// is checked again.
func (s *Server) recoveredTeam(ctx context.Context, u *dspool.User, p *dspool.Pool) (string, error) {
	dir, err := s.teamDirectory(ctx)
	if err != nil {
		return "", err
	}
	teams := p.Granted(dir.of[u.Name])
	if len(teams) == 0 {
		return "", nil
	}
	sort.Strings(teams)
	return teams[0], nil
}

// reconcile judges a node's report of the sessions it hosts: sessions taken
// up after a restart are confirmed (and their Jupyter servers with the
// tokens reported) or, when the node no longer has them, ended; it returns
// the reported sessions the server does not know as live on this node, for
// the node to end.
func (sm *sessions) reconcile(node, name string, hosted []api.HostedSession) []string {
	reported := make(map[string]api.HostedSession, len(hosted))
	var unknown []string
	var confirmed, gone []*Lease
	sm.mu.Lock()
	if !sm.recovered {
		// Judged once the sessions of the previous run are taken up
		// (tookUp), moments from now: a node's first report can come
		// first, and waiting for its next would leave its sessions
		// pending for a heartbeat interval.
		sm.early[node] = earlyReport{name: name, hosted: hosted}
		sm.mu.Unlock()
		return nil
	}
	for _, hs := range hosted {
		reported[hs.Session] = hs
		if l := sm.live[hs.Session]; (l == nil || l.rec.Node != node) && !sm.ending[hs.Session] {
			unknown = append(unknown, hs.Session)
		}
	}
	for _, l := range sm.live {
		if l.rec.Node != node || !l.pending {
			continue
		}
		l.pending = false
		if _, ok := reported[l.rec.ID]; ok {
			confirmed = append(confirmed, l)
		} else {
			gone = append(gone, l)
		}
	}
	sm.mu.Unlock()
	for _, l := range confirmed {
		sm.s.log.Info("session taken up after a restart", "session", l.rec.ID, "user", l.rec.User, "node", l.rec.Node)
		sm.s.notebooks.adopt(l, reported[l.rec.ID].NotebookToken)
	}
	for _, l := range gone {
		// Not here: the handler holds the heartbeat lock, and ending
		// calls the node.
		go sm.end(l, fmt.Sprintf("node %s no longer had it when it reconnected after a control plane restart", name))
	}
	return unknown
}

// earlyReport is a node's report of its sessions made before the sessions
// of the previous run were taken up.
type earlyReport struct {
	name   string
	hosted []api.HostedSession
}

// tookUp records that the sessions of the previous run are taken up, and
// judges the reports nodes made before: their sessions are confirmed now,
// and those the server does not know are ended on the node, as a
// heartbeat's reply would have them.
func (sm *sessions) tookUp() {
	sm.mu.Lock()
	sm.recovered = true
	early := sm.early
	sm.early = nil
	sm.mu.Unlock()
	for node, r := range early {
		for _, id := range sm.reconcile(node, r.name, r.hosted) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := sm.s.hub.call(ctx, node, "/sessions/end", api.SessionEnd{Session: id}); err != nil {
					sm.s.log.Debug("end session on node", "session", id, "err", err)
				}
			}()
		}
	}
}

// releaseHolds gives back the restart's hold of sessions no connection
// joined in time: those with nothing else holding them end.
func (sm *sessions) releaseHolds(now time.Time) {
	var due []*Lease
	sm.mu.Lock()
	for _, l := range sm.live {
		if l.held && !l.pending && !now.Before(l.holdUntil) {
			l.held = false
			due = append(due, l)
		}
	}
	sm.mu.Unlock()
	for _, l := range due {
		l.CloseWith("no connection came back to it after a control plane restart")
	}
}

// awaitReport makes l's Jupyter server, which ran in the previous run, the
// user's server again, starting until l's node reports it (adopt). The
// server holds l as it did before the restart.
func (nbs *notebooks) awaitReport(l *Lease, idle dspool.Duration) {
	sm := l.sm
	sm.mu.Lock()
	l.conns++
	sm.mu.Unlock()
	nb := &notebook{lease: l, idle: time.Duration(idle), cancel: func() {}, rec: dspool.Notebook{User: l.rec.User, Pool: l.rec.Pool,
		State: dspool.NotebookStarting, Message: fmt.Sprintf("the control plane restarted: waiting for node %s to report this server", l.rec.NodeName),
		Node: l.rec.Node, NodeName: l.rec.NodeName, Session: l.rec.ID, StartedAt: l.rec.StartedAt}}
	nbs.mu.Lock()
	nbs.by[l.rec.User] = nb
	nbs.mu.Unlock()
	go nbs.watch(nb)
}

// adopt takes up the Jupyter server of l, a session its node has just
// reported after a restart, with the server's token as the node reported
// it ("": none runs there).
func (nbs *notebooks) adopt(l *Lease, token string) {
	now := nbs.s.cfg.Now().UTC()
	nbs.mu.Lock()
	nb := nbs.by[l.rec.User]
	switch {
	case nb != nil && nb.lease == l && nb.rec.State == dspool.NotebookStarting && token != "":
		nb.token = token
		nb.proxy = nbs.proxy(nb)
		nb.rec.State, nb.rec.Message, nb.rec.ReadyAt = dspool.NotebookReady, "", &now
		nb.lastUse, nb.lastCheck, nb.nextCheck = now, now, now
		nbs.mu.Unlock()
		nbs.s.log.Info("jupyter server taken up after a restart", "user", l.rec.User, "node", l.rec.NodeName)
	case nb != nil && nb.lease == l && nb.rec.State == dspool.NotebookStarting:
		nbs.mu.Unlock()
		// Not here: the heartbeat handler waits, and stopping calls the node.
		go nbs.stopWith(context.Background(), nb, "was no longer running when the control plane restarted")
	case token != "" && (nb == nil || nb.lease != l && nb.rec.State != dspool.NotebookStarting && nb.rec.State != dspool.NotebookReady):
		// A server started in a session another kind of work opened.
		p, err := nbs.s.hub.pool(context.Background(), l.rec.Pool)
		idle := time.Duration(dspool.DefaultJupyterIdle)
		if err == nil {
			idle = time.Duration(p.SessionSettings().JupyterIdle)
		}
		nb = &notebook{lease: l, idle: idle, token: token, cancel: func() {}, rec: dspool.Notebook{User: l.rec.User, Pool: l.rec.Pool,
			State: dspool.NotebookReady, Node: l.rec.Node, NodeName: l.rec.NodeName, Session: l.rec.ID, StartedAt: l.rec.StartedAt, ReadyAt: &now}}
		nb.proxy = nbs.proxy(nb)
		nb.lastUse, nb.lastCheck, nb.nextCheck = now, now, now
		nbs.by[l.rec.User] = nb
		nbs.mu.Unlock()
		l.sm.mu.Lock()
		l.join()
		l.sm.mu.Unlock()
		go nbs.watch(nb)
		nbs.s.log.Info("jupyter server taken up after a restart", "user", l.rec.User, "node", l.rec.NodeName)
	default:
		nbs.mu.Unlock()
	}
}
