package server

import (
	"net/http"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// poolEvents answers GET /api/v1/pools/{name}/events: what happened to a
// pool, oldest first, for every user.
func (s *Server) poolEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	_, poolErr := s.db.Pool(r.Context(), name)
	if poolErr != nil && dspool.ErrorCode(poolErr) != dspool.ENotFound {
		s.fail(w, r, poolErr)
		return
	}
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		var err error
		if since, err = dspool.ParseSince("since", v, s.cfg.Now()); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	pg, err := parsePage(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	evs, err := s.db.PoolEventPage(r.Context(), name, since, pg.before, pg.limit)
	if err == nil && poolErr != nil && len(evs.Items) == 0 && pg.before == 0 {
		err = poolErr // a deleted pool keeps its events; no pool had none
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.PoolEventList{Events: evs.Items, Next: evs.Next})
}
