package server

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
	"github.com/dspool/dspool/api"
	"github.com/dspool/dspool/share"
	"github.com/dspool/dspool/store"
)

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, userFrom(r))
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	var spec dspool.JobSpec
	if err := readJSON(r, &spec); err != nil {
		s.fail(w, r, err)
		return
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" && spec.IdempotencyKey == "" {
		spec.IdempotencyKey = k
	}
	job, created, err := s.submit(r.Context(), userFrom(r), &spec, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if job.ArrayID == job.ID {
		if job.Array, err = s.db.Array(r.Context(), job.ID); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.explainWait(job)
	writeJSON(w, status, job)
}

// submit stores a job of spec for u, once checkJob passes it. With fire,
// the job is the one of a schedule's slot, stored with the slot's record
// (store.FireSchedule); created is false when the job existed already
// (its idempotency key was used) or the slot had fired.
func (s *Server) submit(ctx context.Context, u *dspool.User, spec *dspool.JobSpec, fire *store.Firing) (job *dspool.Job, created bool, err error) {
	// While the store is short of room, its reserve is for the work that
	// runs: new work waits until there is room.
	if err := s.db.Room(); err != nil {
		return nil, false, err
	}
	if err := s.checkJob(ctx, u, spec); err != nil {
		return nil, false, err
	}
	if fire != nil {
		f := *fire
		f.UserID, f.Job = u.ID, spec
		job, err = s.db.FireSchedule(ctx, f)
		created = err == nil
	} else if spec.Tasks != nil {
		job, created, err = s.db.SubmitArray(ctx, u.ID, spec)
	} else {
		job, created, err = s.db.SubmitJob(ctx, u.ID, spec)
	}
	if err != nil {
		return nil, false, err
	}
	if created {
		n := 1
		if spec.Tasks != nil {
			n = len(spec.Tasks.Indices)
		}
		s.metrics.submitted.Add(float64(n))
		if len(spec.Deps) > 0 || spec.Tasks != nil {
			s.mayWait() // what it waits for may have ended already; tasks may be parked
		}
		if len(spec.Deps) == 0 && !spec.Hold {
			s.submitted(job.Pool, job.CPUs, job.Memory, job.GPUs)
		}
	}
	return job, created, nil
}

// checkJob normalizes spec and checks that u may run it as it is: its pool
// exists, takes batch work and has nodes it fits, the team it runs for
// (which it sets) grants the pool and has room in its limits, its priority
// (which it sets, to the default when none is given) is within the range
// of u and that team, and its secrets are u's to use. Every job passes here: those submitted and
// those of schedules, at their creation and at each slot.
func (s *Server) checkJob(ctx context.Context, u *dspool.User, spec *dspool.JobSpec) error {
	if err := spec.Normalize(); err != nil {
		return err
	}
	pool, err := s.db.Pool(ctx, spec.Pool)
	if dspool.ErrorCode(err) == dspool.ENotFound {
		return dspool.Invalid("pool", "no pool named %q: list pools with `dspool pool list`", spec.Pool)
	} else if err != nil {
		return err
	}
	if !pool.Takes(dspool.WorkBatch) {
		return dspool.Invalid("pool", "pool %s takes no batch work: submit to a pool whose work includes batch", pool.Name)
	}
	if err := pool.Fits(spec.CPUs, spec.Memory, spec.GPUs); err != nil {
		return err
	}
	if err := s.checkGPUWant(ctx, pool.Name, spec.GPUs, spec.GPUWant()); err != nil {
		return err
	}
	if spec.Preemptible && pool.Preemption == nil {
		return dspool.Invalid("preemptible", "pool %s does not allow preemptible jobs: submit without --preemptible, or ask an admin to set preemption in the pool's file", pool.Name)
	}
	if spec.Team, err = s.jobTeam(ctx, u, pool, spec); err != nil {
		return err
	}
	b, err := s.priorityBounds(ctx, u.Name, spec.Team, u.Admin)
	if err != nil {
		return err
	}
	p, err := b.Priority(spec.Priority, u.Name, spec.Team)
	if err != nil {
		return err
	}
	spec.Priority = &p // a new value: a schedule's stored spec keeps none
	return s.checkSecrets(ctx, u, spec.Secrets)
}

// jobFor loads job {id} if the caller may see it; another user's job is
// not found, not forbidden, so its existence does not leak.
func (s *Server) jobFor(r *http.Request) (*dspool.Job, error) {
	u := userFrom(r)
	notFound := dspool.Errorf(dspool.ENotFound, "job %s not found: list yours with `dspool job list`", r.PathValue("id"))
	j, err := s.loadRef(r.Context(), r.PathValue("id"))
	if dspool.ErrorCode(err) == dspool.ENotFound {
		// A task that is not there: say whether its job is an array
		// (then which tasks it has) or none, for a job the caller may
		// see; of anyone else's, nothing.
		ref, _ := dspool.ParseTaskRef("id", r.PathValue("id"))
		if ref.Index >= 0 {
			if whole, werr := s.db.Job(r.Context(), ref.ID); werr == nil && (u.Admin || whole.User == u.Name) {
				if whole.ArrayID != whole.ID {
					return nil, dspool.Errorf(dspool.ENotFound, "job %d is not an array, so it has no task %s: show it with `dspool job show %d`", ref.ID, ref, ref.ID)
				}
				return nil, err // the array's: no such task, and where its tasks are
			}
		}
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if !u.Admin && j.User != u.Name {
		return nil, notFound
	}
	s.explainWait(j)
	s.describeGPUs(r.Context(), j)
	return j, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.jobFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	as, err := s.db.Attempts(r.Context(), j.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.JobDetail{Job: j, Attempts: as})
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	u := userFrom(r)
	pg, err := parsePage(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := store.JobFilter{User: u.Name, Pool: q.Get("pool"), Schedule: q.Get("schedule"), Limit: pg.limit, Before: pg.before,
		Arrays: q.Get("tasks") != "true"}
	if a := q.Get("array"); a != "" {
		ref, err := dspool.ParseTaskRef("array", a)
		if err != nil || ref.Index >= 0 {
			s.fail(w, r, dspool.Invalid("array", "%q is not an array id: give the id of an array, as `dspool job list` shows it", a))
			return
		}
		f.Array, f.Arrays = ref.ID, false
	}
	if q.Get("all") == "true" {
		if !u.Admin {
			s.fail(w, r, dspool.Errorf(dspool.EForbidden, "only an admin sees every user's jobs: drop --all-users"))
			return
		}
		f.User = ""
	}
	if st := q.Get("state"); st != "" {
		for _, x := range strings.Split(st, ",") {
			if !dspool.JobState(x).Valid() {
				s.fail(w, r, dspool.Invalid("state", "%q is not a job state: use queued, running, succeeded, failed or cancelled", x))
				return
			}
			f.States = append(f.States, dspool.JobState(x))
		}
	}
	jobs, err := s.db.JobPage(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !f.Arrays {
	} else if err := s.withArrays(r.Context(), jobs.Items); err != nil {
		s.fail(w, r, err)
		return
	}
	for _, j := range jobs.Items {
		s.explainWait(j)
	}
	writeJSON(w, http.StatusOK, api.JobList{Jobs: jobs.Items, Next: jobs.Next})
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.jobFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if j.Array != nil {
		s.cancelArray(w, r, j)
		return
	}
	j, err = s.cancel(r.Context(), j.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// cancel cancels job id: a queued job at once, a running one once its
// agent has stopped it, which it is told to do here.
func (s *Server) cancel(ctx context.Context, id int64) (*dspool.Job, error) {
	j, err := s.db.CancelJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.State == dspool.JobCancelled {
		s.kickDeps() // work that waited for it may be settled
	}
	if j.State == dspool.JobRunning {
		s.hub.kill(j.Node, api.AttemptRef{Job: j.ID, Attempt: j.Attempt})
	}
	s.notify(j.ID)
	return j, nil
}

func (s *Server) waitJob(w http.ResponseWriter, r *http.Request) {
	timeout := 60 * time.Second
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 || d > 10*time.Minute {
			s.fail(w, r, dspool.Invalid("timeout", "must be a duration up to 10m"))
			return
		}
		timeout = d
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	if j, err := s.jobFor(r); err != nil {
		s.fail(w, r, err)
		return
	} else if j.Array != nil {
		s.waitArray(w, r, j, deadline.C)
		return
	}
	for {
		j, err := s.jobFor(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		c := s.watch(j.ID)
		if j.State.Terminal() {
			s.unwatch(j.ID, c)
			writeJSON(w, http.StatusOK, j)
			return
		}
		// Re-read after subscribing, so a change in between is not missed.
		if j2, err := s.db.Job(r.Context(), j.ID); err == nil && j2.State.Terminal() {
			s.unwatch(j.ID, c)
			writeJSON(w, http.StatusOK, j2)
			return
		}
		select {
		case <-c:
		case <-deadline.C:
			s.unwatch(j.ID, c)
			if now, err := s.jobFor(r); err == nil {
				j = now // how the wait for a node goes now
			}
			writeJSON(w, http.StatusOK, j)
			return
		case <-r.Context().Done():
			s.unwatch(j.ID, c)
			return
		}
	}
}

// jobLogs streams an attempt's output from the share. With follow=true it
// keeps the response open, sending what the job writes, until the attempt
// has ended and the file is read to its end.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) {
	j, err := s.jobFor(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if j.Array != nil {
		s.fail(w, r, dspool.Invalid("id", "%d is an array of %d tasks: give one task, as in `dspool job logs %d_%d`", j.ID, j.Array.Tasks, j.ID, *j.ArrayIndex))
		return
	}
	attempt := j.Attempt
	if a := r.URL.Query().Get("attempt"); a != "" && a != "0" {
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 || n > j.Attempt {
			s.fail(w, r, dspool.Invalid("attempt", "job %d has attempts 1 to %d", j.ID, j.Attempt))
			return
		}
		attempt = n
	}
	follow := r.URL.Query().Get("follow") == "true"
	owner, err := s.shareOwner(r.Context(), j.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rel := share.Log(j.ID, attempt)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// A network share caches a file's size, and reads stop at the size it
	// last saw: refresh asks the file server again (NFS and FUSE honour a
	// forced statx), before the first read, each second while the file is
	// followed, and once more at the end, for what another machine
	// appended.
	var synced time.Time
	refresh := func() {
		var st unix.Statx_t
		_ = unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC, unix.STATX_SIZE, &st)
		synced = time.Now()
	}
	buf := make([]byte, 32<<10)
	var wrote, done, woke bool
	var checked time.Time
	copyOut := func() bool {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return false
				}
				wrote = true
			}
			if err == io.EOF || n == 0 {
				return true
			}
			if err != nil {
				return false
			}
		}
	}
	for {
		if f == nil {
			f, err = s.openLog(rel, owner)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				if !wrote {
					s.fail(w, r, err)
				}
				return
			}
			if f == nil && !wrote && (j.Attempt != attempt || j.State.Terminal()) {
				s.fail(w, r, dspool.Errorf(dspool.ENotFound, "job %d has no log of attempt %d on the share (%s): the attempt never started, or the job removed its log", j.ID, attempt, rel))
				return
			}
		}
		if f != nil && time.Since(synced) >= time.Second {
			refresh()
		}
		if f != nil && !copyOut() {
			return
		}
		if !wrote {
			w.WriteHeader(http.StatusOK)
			wrote = true
		}
		_ = rc.Flush()
		// The file is read every logPoll, the job's state in the store
		// every logStatePoll (and whenever it changes).
		if !follow || woke || time.Since(checked) >= logStatePoll {
			cur, err := s.db.Job(r.Context(), j.ID)
			if err != nil {
				return
			}
			// The attempt is over once the job moved past it; one more read
			// after that catches the last bytes the agent wrote before
			// reporting.
			done = cur.Attempt != attempt || cur.State != dspool.JobRunning && cur.State != dspool.JobQueued
			checked = time.Now()
		}
		if !follow || done && f != nil {
			if f != nil && done {
				refresh()
				copyOut()
			}
			return
		}
		if done && f == nil {
			return
		}
		c := s.watch(j.ID)
		woke = false
		select {
		case <-c:
			woke = true
		case <-time.After(logPoll):
			s.unwatch(j.ID, c)
		case <-r.Context().Done():
			s.unwatch(j.ID, c)
			return
		}
	}
}

// A followed log is read every logPoll (what a browser following it waits
// at most for a line, past the share's own delay), and its job's state
// looked up every logStatePoll.
const (
	logPoll      = 50 * time.Millisecond
	logStatePoll = 250 * time.Millisecond
)

// shareOwner is the account whose files of user's work on the share are
// theirs: the user's own ids when the control plane runs as root (its
// agents run work as its users), else the control plane's own.
func (s *Server) shareOwner(ctx context.Context, user string) (share.Owner, error) {
	if os.Geteuid() != 0 {
		return share.Self(), nil
	}
	u, err := s.hub.user(ctx, user)
	if err != nil {
		return share.Owner{}, fmt.Errorf("owner of %s's files: %w", user, err)
	}
	if u.UID == 0 {
		return share.Owner{}, dspool.Errorf(dspool.EForbidden, "user %s has uid 0: dspool does not act as root on the share", user)
	}
	return share.Owner{UID: u.UID, GID: u.GID}, nil
}

// makeUserDir makes a user's directory on the share (home/ann, jobs/7)
// before work is sent to a node: where the share squashes root on the
// nodes, only the control plane can. One it cannot make is left to the
// node, which says why it cannot either.
func (s *Server) makeUserDir(ctx context.Context, user, rel string, perm os.FileMode) {
	if s.cfg.Share == "" {
		return
	}
	o, err := s.shareOwner(ctx, user)
	if err != nil {
		return
	}
	if err := share.UserDir(s.cfg.Share, rel, o, perm); err != nil {
		s.log.Warn("make a user's directory on the share", "dir", rel, "err", err)
	}
}

// openLog opens an attempt's log as its owner: a log that is not a regular
// file of the job's user with one link is refused, and nothing is read or
// waited on.
func (s *Server) openLog(rel string, o share.Owner) (f *os.File, err error) {
	err = share.As(o.UID, o.GID, func() error {
		f, err = share.Open(s.cfg.Share, rel, o)
		return err
	})
	if errors.Is(err, share.ErrUnsafe) {
		return nil, dspool.Errorf(dspool.EConflict, "%s. dspool shows only a log that is a regular file of the job's user with one link: remove or replace it", err)
	}
	return f, err
}
