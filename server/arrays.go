package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
)

// Arrays, dependencies and holds. A job route's {id} is a job (12), an
// array (40: the id of its first task) or one task (40_7). On an array,
// cancel, wait, hold and release act on every task, as in Slurm; show
// returns the first task with the array summed up in its Array.

// loadRef loads the job that {id} names, and the array's summary when it
// names a whole array.
func (s *Server) loadRef(ctx context.Context, raw string) (*dspool.Job, error) {
	ref, err := dspool.ParseTaskRef("id", raw)
	if err != nil {
		return nil, err
	}
	if ref.Index >= 0 {
		return s.db.Task(ctx, ref.ID, ref.Index)
	}
	j, err := s.db.Job(ctx, ref.ID)
	if err != nil {
		return nil, err
	}
	if j.ArrayID == j.ID {
		if j.Array, err = s.db.Array(ctx, j.ID); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// withArrays fills in the summary of each array among jobs, which list
// arrays as their first tasks.
func (s *Server) withArrays(ctx context.Context, jobs []*dspool.Job) error {
	var ids []int64
	for _, j := range jobs {
		if j.ArrayID != 0 && j.ArrayID == j.ID {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	as, err := s.db.Arrays(ctx, ids)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if a := as[j.ID]; a != nil && j.ArrayID == j.ID {
			j.Array = a
		}
	}
	return nil
}

func (s *Server) cancelArray(w http.ResponseWriter, r *http.Request, j *dspool.Job) {
	queued, running, err := s.db.CancelArray(r.Context(), j.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, t := range running {
		s.hub.kill(t.Node, api.AttemptRef{Job: t.ID, Attempt: t.Attempt})
		s.notify(t.ID)
	}
	for _, id := range queued {
		s.notify(id)
	}
	if len(queued) > 0 {
		s.Kick() // work that waited for these tasks may be settled
	}
	s.writeArray(w, r, j.ID)
}

func (s *Server) writeArray(w http.ResponseWriter, r *http.Request, id int64) {
	j, err := s.loadRef(r.Context(), fmt.Sprint(id))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.explainWait(j)
	writeJSON(w, http.StatusOK, j)
}

// waitArray answers once every task of the array has ended, or at the
// deadline with the array as it is then.
func (s *Server) waitArray(w http.ResponseWriter, r *http.Request, j *dspool.Job, deadline <-chan time.Time) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		a, err := s.db.Array(r.Context(), j.ID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if a.Done() {
			break
		}
		select {
		case <-tick.C:
			continue
		case <-deadline:
		case <-r.Context().Done():
			return
		}
		break
	}
	s.writeArray(w, r, j.ID)
}

func (s *Server) holdJob(w http.ResponseWriter, r *http.Request)    { s.setHold(w, r, true) }
func (s *Server) releaseJob(w http.ResponseWriter, r *http.Request) { s.setHold(w, r, false) }

// setHold holds or releases a queued job, or every queued task of an
// array.
func (s *Server) setHold(w http.ResponseWriter, r *http.Request, hold bool) {
	j, err := s.jobFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.db.SetHold(r.Context(), j.ID, j.Array != nil, hold)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	verb := map[bool]string{true: "held", false: "released"}[hold]
	if n == 0 && j.Array == nil && (j.State != dspool.JobQueued) {
		s.fail(w, r, dspool.Errorf(dspool.EConflict, "job %s is %s: only a queued job can be %s", j.Ref(), j.State, verb))
		return
	}
	if !hold && n > 0 {
		s.Kick()
	}
	if j.Array != nil {
		s.writeArray(w, r, j.ID)
		return
	}
	j, err = s.jobFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.notify(j.ID)
	writeJSON(w, http.StatusOK, j)
}

// unpark brings the next tasks of large arrays into the queue (Unpark).
func (s *Server) unpark(ctx context.Context) {
	n, err := s.db.Unpark(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("unpark array tasks", "err", err)
		}
		return
	}
	if n > 0 {
		s.scaler.kick()
	}
}

// resolveDeps settles what queued work waits for (ResolveDeps): work that
// may now run is scheduled, work that never can has ended.
func (s *Server) resolveDeps(ctx context.Context) {
	res, err := s.db.ResolveDeps(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("resolve dependencies", "err", err)
		}
		return
	}
	for _, id := range res.Ended {
		s.notify(id)
	}
	if len(res.Released) > 0 || len(res.Ended) > 0 {
		s.scaler.kick()
	}
}

// waitingFor says what a queued job waits for before the queue: its hold,
// or the jobs of its --after ("" when nothing).
func waitingFor(j *dspool.Job) string {
	if j.State != dspool.JobQueued {
		return ""
	}
	if j.OnHold {
		return fmt.Sprintf("held: release it with `dspool job release %s`", holdRef(j))
	}
	if j.After == "" || j.AfterMet {
		return ""
	}
	ds, err := dspool.ParseAfter("after", j.After)
	if err != nil {
		return "waiting for " + j.After
	}
	var parts []string
	for _, d := range ds {
		what := "job " + d.On.String()
		if d.On.Index >= 0 {
			what = "task " + d.On.String()
		}
		switch d.Kind {
		case dspool.AfterOK:
			parts = append(parts, what+" to succeed")
		case dspool.AfterNotOK:
			parts = append(parts, what+" to fail")
		default:
			parts = append(parts, what+" to end")
		}
	}
	return "waiting for " + strings.Join(parts, ", ")
}

// holdRef is what releases j: its array when the whole array is held.
func holdRef(j *dspool.Job) string {
	if j.Array != nil {
		return fmt.Sprint(j.ID)
	}
	return j.Ref()
}
