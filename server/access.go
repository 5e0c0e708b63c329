package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dspool/dspool"
)

// Ending what a credential opened. Each SSH connection holds a ConnLease
// that knows the credential it was opened with (a key, a password), and
// each Jupyter server knows the credential that started it (a token, a web
// login): removing a key ends that key's connections, revoking a token
// ends the server it started, and disabling a user ends all of their
// sessions, each with a reason the user is shown.

// KeyCredential and PasswordCredential name how an SSH connection
// authenticated, for OpenSession.
func KeyCredential(fingerprint string) string { return "key " + fingerprint }

const PasswordCredential = "password"

// ConnLease is one connection's hold on a session, opened with one
// credential. It ends with its session, or alone when its credential is
// removed.
type ConnLease struct {
	*Lease
	user, cred string

	done      chan struct{}
	why       atomic.Pointer[string]
	ending    connEnding // set before done is closed
	endOnce   sync.Once
	closed    chan struct{}
	closeOnce sync.Once
	set       *connSet
}

// connEnding is why a connection must end, as its user is to be told.
type connEnding int

const (
	endedSession    connEnding = iota // its session ended (killed, node lost): a new login starts another
	endedCredential                   // only this connection: the credential it used was removed
	endedUser                         // its user was disabled, and may not log in again
)

// Done is closed when the connection must end: its session ended from
// outside, or its credential was removed. Reason says why.
func (c *ConnLease) Done() <-chan struct{} { return c.done }

func (c *ConnLease) Reason() string {
	if p := c.why.Load(); p != nil {
		return *p
	}
	return ""
}

// CredentialGone reports, once Done is closed, that only this connection
// was ended: the credential it was opened with was removed, and the user's
// session and other connections go on.
func (c *ConnLease) CredentialGone() bool { return c.ending == endedCredential }

// UserDisabled reports, once Done is closed, that the user was disabled:
// they cannot log in again until an admin enables them.
func (c *ConnLease) UserDisabled() bool { return c.ending == endedUser }

// Close gives the lease back.
func (c *ConnLease) Close() {
	c.closeOnce.Do(func() {
		c.set.remove(c)
		close(c.closed)
		reason := "the user logged out"
		if p := c.why.Load(); p != nil {
			reason = *p
		}
		c.Lease.CloseWith(reason)
	})
}

func (c *ConnLease) end(reason string, ending connEnding) {
	c.endOnce.Do(func() {
		c.why.Store(&reason)
		c.ending = ending
		close(c.done)
	})
}

// connSet is the open ConnLeases; its zero value is empty.
type connSet struct {
	mu sync.Mutex
	m  map[*ConnLease]struct{}
}

func (cs *connSet) add(c *ConnLease) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[*ConnLease]struct{}{}
	}
	cs.m[c] = struct{}{}
}

func (cs *connSet) remove(c *ConnLease) {
	cs.mu.Lock()
	delete(cs.m, c)
	cs.mu.Unlock()
}

// end ends the connections of user opened with cred.
func (cs *connSet) end(user, cred, reason string) int {
	cs.mu.Lock()
	var ends []*ConnLease
	for c := range cs.m {
		if c.user == user && c.cred == cred {
			ends = append(ends, c)
		}
	}
	cs.mu.Unlock()
	for _, c := range ends {
		c.end(reason, endedCredential)
	}
	return len(ends)
}

// connect wraps a lease for one connection opened with cred, and ends it
// at once when cred no longer lets user in (it was removed, or the user
// disabled, while the session was being placed).
func (s *Server) connect(ctx context.Context, l *Lease, user, cred string) *ConnLease {
	c := &ConnLease{Lease: l, user: user, cred: cred, done: make(chan struct{}), closed: make(chan struct{}), set: &s.sessions.conns}
	s.sessions.conns.add(c)
	go func() {
		select {
		case <-l.Done():
			ending := endedSession
			if l.disabled.Load() {
				ending = endedUser
			}
			c.end(l.Reason(), ending)
		case <-c.closed:
		}
	}()
	if reason, ending := s.credentialGone(ctx, user, cred); reason != "" {
		c.end(reason, ending)
	}
	return c
}

// credentialGone says why user may no longer use cred, or "" when they may.
func (s *Server) credentialGone(ctx context.Context, user, cred string) (string, connEnding) {
	u, err := s.db.User(ctx, user)
	if err != nil {
		return "user " + user + " is gone", endedUser
	}
	if u.Disabled {
		return "user " + user + " is disabled", endedUser
	}
	if fp, ok := strings.CutPrefix(cred, "key "); ok {
		if k, err := s.db.KeyByFingerprint(ctx, fp); err != nil || k.User != user {
			return "the key it used, " + fp + ", was removed", endedCredential
		}
	}
	return "", endedSession
}

// endCredential ends the SSH connections of user opened with cred and the
// Jupyter server it started.
func (s *Server) endCredential(user, cred, reason string) {
	n := s.sessions.conns.end(user, cred, reason)
	stopped := s.notebooks.endCredential(user, cred, reason)
	if n > 0 || stopped {
		s.log.Info("ended what a credential opened", "user", user, "credential", cred, "connections", n, "jupyter", stopped, "reason", reason)
	}
}

// endUser ends every session of user, who was disabled, their Jupyter
// server with them.
func (s *Server) endUser(user, reason string) {
	sm := s.sessions
	sm.mu.Lock()
	var ls []*Lease
	for _, l := range sm.live {
		if l.rec.User == user {
			ls = append(ls, l)
		}
	}
	sm.mu.Unlock()
	for _, l := range ls {
		l.disabled.Store(true)
		sm.end(l, reason)
	}
	// One still waiting for a node has no session yet.
	nbs := s.notebooks
	nbs.mu.Lock()
	nb := nbs.by[user]
	nbs.mu.Unlock()
	if nb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nbs.stopWith(ctx, nb, reason)
		cancel()
	}
	s.log.Info("ended a user's sessions", "user", user, "sessions", len(ls), "reason", reason)
}

// endCredential stops user's Jupyter server when cred started it.
func (nbs *notebooks) endCredential(user, cred, reason string) bool {
	nbs.mu.Lock()
	nb := nbs.by[user]
	live := nb != nil && nb.cred == cred && (nb.rec.State == dspool.NotebookStarting || nb.rec.State == dspool.NotebookReady)
	nbs.mu.Unlock()
	if !live {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nbs.stopWith(ctx, nb, reason)
	return true
}

func (s *Server) disableUser(w http.ResponseWriter, r *http.Request) { s.setDisabled(w, r, true) }
func (s *Server) enableUser(w http.ResponseWriter, r *http.Request)  { s.setDisabled(w, r, false) }

// setDisabled disables or enables the user {name}. Disabling ends their
// sessions and Jupyter server at once, and refuses every credential of
// theirs from then on.
func (s *Server) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	caller, name := userFrom(r), r.PathValue("name")
	action := dspool.AuditUserEnable
	if disabled {
		action = dspool.AuditUserDisable
		if name == caller.Name {
			s.fail(w, r, dspool.Errorf(dspool.EConflict, "you cannot disable yourself: ask another admin"))
			return
		}
	}
	u, err := s.db.SetUserDisabled(r.Context(), name, disabled, s.cfg.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if disabled {
		s.auth.dropUser(u.ID)
		s.endUser(u.Name, "user "+u.Name+" was disabled by "+caller.Name)
	}
	s.audit(r, "", action, "user "+u.Name, dspool.AuditSuccess, "")
	writeJSON(w, http.StatusOK, u)
}
