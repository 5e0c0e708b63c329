package server

import (
	"net/http"

	"github.com/dspool/dspool"
)

// usage answers GET /api/v1/usage: node time by pool for every user; job
// and session time by user, every user's for an admin and only the
// caller's for anyone else.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := s.cfg.Now()
	since := now.Add(-dspool.DefaultUsageWindow)
	if v := q.Get("since"); v != "" {
		var err error
		if since, err = dspool.ParseSince("since", v, now); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	by, err := dspool.ParseUsageBy("by", q.Get("by"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	user := ""
	if u := userFrom(r); by == dspool.UsageByUser && !u.Admin {
		user = u.Name
	}
	rep, err := s.db.Usage(r.Context(), since, now, by, user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
