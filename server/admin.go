package server

import (
	"fmt"
	"net/http"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

func (s *Server) applyPools(w http.ResponseWriter, r *http.Request) {
	var req api.PoolApply
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(req.Pools) == 0 {
		s.fail(w, r, dspool.Invalid("pools", "is empty: give at least one pool"))
		return
	}
	seen := map[string]bool{}
	for i, p := range req.Pools {
		prefix := fmt.Sprintf("pools[%d].", i)
		if p == nil {
			s.fail(w, r, dspool.Invalid(prefix[:len(prefix)-1], "is null"))
			return
		}
		if err := p.Normalize(prefix); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.cfg.Kinds.Check(prefix, p); err != nil {
			s.fail(w, r, err)
			return
		}
		if seen[p.Name] {
			s.fail(w, r, dspool.Invalid(prefix+"name", "pool %s appears twice", p.Name))
			return
		}
		seen[p.Name] = true
	}
	if err := s.checkPoolTeams(r.Context(), req.Pools); err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]*dspool.Pool, 0, len(req.Pools))
	for _, p := range req.Pools {
		saved, err := s.db.PutPool(r.Context(), p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, saved)
		s.audit(r, "", dspool.AuditPoolApply, "pool "+saved.Name, dspool.AuditSuccess, "")
	}
	s.hub.poolsChanged()
	s.Kick()
	writeJSON(w, http.StatusOK, api.PoolApply{Pools: out})
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request) {
	pools, err := s.db.Pools(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	nodes, err := s.nodes(r, "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]*api.PoolDetail, 0, len(pools))
	for _, p := range pools {
		d := &api.PoolDetail{Pool: p, Nodes: []*dspool.Node{}}
		for _, n := range nodes {
			if n.Pool == p.Name {
				d.Nodes = append(d.Nodes, n)
			}
		}
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getPool(w http.ResponseWriter, r *http.Request) {
	p, err := s.db.Pool(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	nodes, err := s.nodes(r, p.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if nodes == nil {
		nodes = []*dspool.Node{}
	}
	writeJSON(w, http.StatusOK, api.PoolDetail{Pool: p, Nodes: nodes})
}

func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) {
	p, err := s.db.Pool(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	expires, err := s.joinTokenExpiry(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tok := NewSecret("dspj_")
	t, err := s.db.AddJoinToken(r.Context(), p.Name, HashSecret(tok), userFrom(r).Name, expires)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "", dspool.AuditJoinTokenCreate, "pool "+p.Name, dspool.AuditSuccess, joinTokenDetail(t))
	s.event(r.Context(), p.Name, dspool.EventJoinToken, nil, fmt.Sprintf("%s created join token %d: %s", userFrom(r).Name, t.ID, joinTokenDetail(t)))
	writeJSON(w, http.StatusCreated, api.JoinToken{Pool: p.Name, Token: api.JoinTokenWithPin(tok, s.cfg.CAPin), CAPin: s.cfg.CAPin, ID: t.ID, ExpiresAt: t.ExpiresAt})
}

// nodes lists nodes with what the hub knows live: allocation, usage and
// last contact.
func (s *Server) nodes(r *http.Request, pool string) ([]*dspool.Node, error) {
	// ?gone=true adds the nodes that left (autoscaled away, retired), so
	// that old jobs and events can still name theirs.
	nodes, err := s.db.Nodes(r.Context(), pool, r.URL.Query().Get("gone") == "true")
	if err == nil {
		err = s.dropOwnAccounts(r.Context(), nodes)
	}
	if err != nil {
		return nil, err
	}
	active, err := s.db.ActiveJobs(r.Context())
	if err != nil {
		return nil, err
	}
	byID := map[string]*dspool.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
		n.Allocated.GPUs = []int{}
		s.hub.decorate(n)
		if t, ok := s.scaler.idleSince(n.ID); ok {
			n.IdleSince = &t
		}
	}
	for _, j := range active {
		if n := byID[j.Node]; n != nil && j.State == dspool.JobRunning {
			n.Allocated.CPUs += j.CPUs
			n.Allocated.Memory += j.Memory
			n.Allocated.GPUs = append(n.Allocated.GPUs, j.GPUIndices...)
		}
	}
	// Sessions hold their reservations as jobs hold theirs.
	for id, r := range s.sessions.reserved() {
		if n := byID[id]; n != nil {
			n.Allocated.CPUs += r.CPUs
			n.Allocated.Memory += r.Memory
			n.Allocated.GPUs = append(n.Allocated.GPUs, r.GPUs...)
		}
	}
	return nodes, nil
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.nodes(r, r.URL.Query().Get("pool"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if nodes == nil {
		nodes = []*dspool.Node{}
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.db.Users(r.Context())
	if err == nil {
		err = s.withEmails(r.Context(), users)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, users)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req api.UserCreate
	if err := readJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	email, err := s.checkNewEmail(r.Context(), req.Email)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.db.CreateUser(r.Context(), req.Name, req.Admin)
	if err == nil && email != "" {
		err = s.db.SetUserEmail(r.Context(), u.Name, email)
		u.Email = email
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	detail := ""
	if u.Admin {
		detail = "admin"
	}
	s.audit(r, "", dspool.AuditUserCreate, "user "+u.Name, dspool.AuditSuccess, detail)
	warnings, err := s.userWarnings(r.Context(), u)
	if err != nil {
		s.log.Error("user create: check the new user's uid on the nodes", "user", u.Name, "err", err)
	}
	writeJSON(w, http.StatusCreated, api.NewUser{User: *u, Warnings: warnings})
}

// createToken, listTokens, revokeToken: tokens.go.
