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
		s.kickDeps() // work that waited for these tasks may be settled
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

// depsLoop brings parked tasks into the queue and settles what jobs wait
// for, when kicked (a job ended, was cancelled or submitted with --after)
// and each second, apart from the scheduling loop, so that neither a
// cancel nor a scheduling pass pays for the other; what it lets run starts
// a scheduling pass.
func (s *Server) depsLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.depsKick:
		case <-t.C:
		}
		// Nothing to look at since a pass found nothing waiting: no
		// submission with --after or of an array came since.
		gen := s.depsGen.Load()
		if gen == s.depsIdle.Load() {
			continue
		}
		n, parked := s.unpark(ctx)
		m, waiting := s.resolveDeps(ctx)
		if !parked && !waiting {
			s.depsIdle.Store(gen)
		}
		if n+m > 0 {
			select {
			case s.kick <- struct{}{}:
			default:
			}
			s.scaler.kick()
		}
	}
}

// unpark brings the next tasks of large arrays into the queue (Unpark),
// and returns how many.
func (s *Server) unpark(ctx context.Context) (n int, parked bool) {
	n, parked, err := s.db.Unpark(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("unpark array tasks", "err", err)
		}
		return n, true
	}
	return n, parked
}

// mayWait tells the dependencies' loop that a submission may wait for
// others, or has parked tasks: it looks again.
func (s *Server) mayWait() {
	s.depsGen.Add(1)
	s.kickDeps()
}

// resolveDeps settles what queued work waits for (ResolveDeps): work that
// never can run has ended; it returns how many jobs and arrays it settled,
// and whether some still wait.
func (s *Server) resolveDeps(ctx context.Context) (settled int, waiting bool) {
	res, err := s.db.ResolveDeps(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("resolve dependencies", "err", err)
		}
		return 0, true
	}
	for _, id := range res.Ended {
		s.notify(id)
	}
	return len(res.Released) + len(res.Ended), res.Waiting
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
