package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/cron"
	"github.com/dspool/dspool/store"
)

// Schedules (recurring jobs) through the API: a user creates, sees, pauses,
// resumes and deletes their own; an admin everyone's. The loop that fires
// them is in recurring.go.

// scheduleRuns is how many of its latest runs a schedule is shown with.
const scheduleRuns = 10

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) {
	if err := s.db.Room(); err != nil {
		s.fail(w, r, err)
		return
	}
	var spec dspool.ScheduleSpec
	if err := readJSON(r, &spec); err != nil {
		s.fail(w, r, err)
		return
	}
	if spec.Job.Name == "" {
		spec.Job.Name = spec.Name // its runs are listed by the schedule's name
	}
	if err := spec.Normalize(); err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.cfg.Now()
	c, err := cron.Parse(spec.Cron, spec.Location())
	if err == nil {
		err = c.Check(now)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The job is checked as `job submit` checks one, now and at each
	// slot: a schedule that could not run is refused at once. Its team
	// stays as given: "" is the owner's one team that may use the pool
	// at each slot, as it is for a job submitted then.
	u := userFrom(r)
	job := spec.Job
	if err := s.checkJob(r.Context(), u, &job); err != nil {
		s.fail(w, r, dspool.WithinField("job", err))
		return
	}
	// A slot's run is one job, which nothing holds back.
	switch {
	case job.Tasks != nil:
		s.fail(w, r, dspool.Invalid("job.array", "a schedule's runs are single jobs: leave out --array and --sweep"))
		return
	case job.After != "" || job.Hold:
		s.fail(w, r, dspool.Invalid("job.after", "a schedule's runs start at their slots: leave out --after and --hold"))
		return
	}
	sc, err := s.db.CreateSchedule(r.Context(), u.ID, &spec, c.Next(now))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.wakeRecurring()
	writeJSON(w, http.StatusCreated, sc)
}

// scheduleFor loads the schedule {ref} if the caller may see it: one of
// their own by name, or by id one of their own or, for an admin, anyone's.
// Another user's is not found, not forbidden, so its existence does not
// leak.
func (s *Server) scheduleFor(r *http.Request) (*dspool.Schedule, error) {
	ref := r.PathValue("ref")
	u := userFrom(r)
	if ref == "" || strings.Trim(ref, "0123456789") != "" {
		if err := dspool.ValidateName("ref", ref); err != nil {
			return nil, dspool.Invalid("ref", "%q is neither a schedule's name nor its id: see `dspool schedule list`", ref)
		}
		return s.db.ScheduleNamed(r.Context(), u.Name, ref)
	}
	id, err := strconv.ParseInt(ref, 10, 64)
	if err != nil || id <= 0 {
		return nil, dspool.Invalid("ref", "%q is not a schedule id: see `dspool schedule list`", ref)
	}
	sc, err := s.db.Schedule(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if !u.Admin && sc.User != u.Name {
		return nil, dspool.Errorf(dspool.ENotFound, "schedule %d not found: list yours with `dspool schedule list`", id)
	}
	return sc, nil
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r)
	user := u.Name
	if r.URL.Query().Get("all") == "true" {
		if !u.Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin sees every user's schedules: drop --all-users"))
			return
		}
		user = ""
	}
	l, err := s.db.Schedules(r.Context(), user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ScheduleList{Schedules: l})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	sc, err := s.scheduleFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	runs, err := s.db.ListJobs(r.Context(), store.JobFilter{User: sc.User, Schedule: sc.Name, Limit: scheduleRuns})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if runs == nil {
		runs = []*dspool.Job{}
	}
	for _, j := range runs {
		s.explainWait(j)
	}
	writeJSON(w, http.StatusOK, api.ScheduleDetail{Schedule: sc, Runs: runs})
}

func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) {
	sc, err := s.scheduleFor(r)
	if err == nil && !sc.Paused {
		sc, err = s.db.PauseSchedule(r.Context(), sc.ID)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// resumeSchedule lets a paused schedule fire from its next slot after now:
// the slots it was paused for do not run.
func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) {
	sc, err := s.scheduleFor(r)
	if err == nil && sc.Paused {
		now := s.cfg.Now()
		var c *cron.Schedule
		if c, err = cron.Parse(sc.Cron, sc.Location()); err == nil {
			sc, err = s.db.ResumeSchedule(r.Context(), sc.ID, c.Next(now))
			s.wakeRecurring()
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// deleteSchedule deletes a schedule; its runs stay, queued or running
// ones included, as the jobs they are.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	sc, err := s.scheduleFor(r)
	if err == nil {
		err = s.db.DeleteSchedule(r.Context(), sc.ID)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sc)
}
