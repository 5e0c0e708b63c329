package server

import (
	"fmt"
	"net/http"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// Node credentials: an agent rotates its own (POST /api/v1/agents/rotate,
// authenticated by the current one), and an admin revokes a node's (POST
// /api/v1/nodes/{name}/revoke), which cuts the node off at once.

// rotate gives the authenticated node a new credential. The old one stays
// good until the new one is first used (store.RotateNodeCredential), so an
// agent that dies before keeping it still gets in.
func (h *hub) rotate(w http.ResponseWriter, r *http.Request) {
	node, err := h.s.db.NodeByCredential(r.Context(), HashSecret(bearer(r)))
	if err != nil {
		h.s.fail(w, r, err)
		return
	}
	cred := NewSecret("dspn_")
	if err := h.s.db.RotateNodeCredential(r.Context(), node.ID, HashSecret(cred)); err != nil {
		h.s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{Node: node.ID, Name: node.Name, Pool: node.Pool, Credential: cred})
}

// revokeNode revokes a node's credential and closes its connection: its
// agent is refused from now on, and its work is handled as a lost node's.
func (s *Server) revokeNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r.Context(), r.PathValue("name")) // the live node of that name, not a gone one
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.db.RevokeNodeCredential(r.Context(), n.ID, s.cfg.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.hub.disconnect(n.ID)
	// Its work is a lost node's now: the node will not come back.
	why := "its credential was revoked by " + userFrom(r).Name
	changed, err := s.db.LoseNode(r.Context(), n.ID, why)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.sessions.nodeGone(n.ID, fmt.Sprintf("node %s was cut off: %s", n.Name, why))
	for _, j := range changed {
		s.notify(j.ID)
	}
	s.Kick()
	s.audit(r, "", dspool.AuditNodeRevoke, "node "+n.Name, dspool.AuditSuccess, "")
	s.event(r.Context(), n.Pool, dspool.EventNodeRevoked, []string{n.ID}, "node "+n.Name+"'s credential was revoked by "+userFrom(r).Name+": it is cut off")
	s.log.Info("node credential revoked", "node", n.ID, "name", n.Name, "by", userFrom(r).Name)
	if cur, err := s.db.Node(r.Context(), n.ID); err == nil {
		n = cur
	}
	writeJSON(w, http.StatusOK, n)
}
