package server

import (
	"context"
	"net/http"
	"time"
)

// Health. /healthz is liveness: it answers 200 while the control plane
// serves requests at all, so that a supervisor never restarts it for a
// fault a restart cannot mend (a full disk), and says "degraded" with the
// reason when it cannot do everything. /readyz is readiness: 503 with the
// reason while the control plane takes no new work (its store is short of
// room), 200 otherwise; a load balancer or an operator's check uses it.

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.db.Room(); err != nil {
		w.Write([]byte("degraded: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.db.Room(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// roomLoop has the store take its reserve back once its disk has room
// again, and logs when the store runs short of room and when it recovers.
func (s *Server) roomLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	short := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.db.CheckRoom(ctx); err != nil {
			s.log.Warn("store room", "err", err)
		}
		err := s.db.Room()
		switch {
		case err != nil && !short:
			s.log.Error("the store is short of room: new work is refused until there is room", "err", err)
		case err == nil && short:
			s.log.Info("the store has room again: it took its reserve back and takes new work")
		}
		short = err != nil
	}
}
