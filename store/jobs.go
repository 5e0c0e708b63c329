package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

const jobCols = `j.id, u.name, j.team, j.name, j.pool, j.state, j.reason, j.exit_code, j.message, j.attempt, j.node,
	j.cpus, j.memory, j.gpus, j.gpu_indices, j.time_limit, j.retries, j.priority, j.env, j.workdir, j.command,
	j.cancel_requested, j.submitted_at, j.started_at, j.finished_at, j.secrets, j.schedule, j.slot,
	j.array_id, j.array_index, j.deps, j.after_met, j.on_hold, j.image, j.gpu_type, j.gpu_memory,
	j.preemptible, j.preemptions, j.preempt_requested`

type scanner interface{ Scan(...any) error }

func scanJob(s scanner) (*dspool.Job, error) {
	var j dspool.Job
	var exit, submitted sql.NullInt64
	var started, finished, slot sql.NullInt64
	var gpus, env, cmd, secrets string
	var timeLimit int64
	var cancel, index, afterMet, hold, preemptible, preempting int
	if err := s.Scan(&j.ID, &j.User, &j.Team, &j.Name, &j.Pool, &j.State, &j.Reason, &exit, &j.Message, &j.Attempt, &j.Node,
		&j.CPUs, &j.Memory, &j.GPUs, &gpus, &timeLimit, &j.Retries, &j.Priority, &env, &j.Workdir, &cmd,
		&cancel, &submitted, &started, &finished, &secrets, &j.Schedule, &slot,
		&j.ArrayID, &index, &j.After, &afterMet, &hold, &j.Image, &j.GPUType, &j.GPUMemory,
		&preemptible, &j.Preemptions, &preempting); err != nil {
		return nil, err
	}
	if j.ArrayID != 0 {
		j.ArrayIndex = &index
	}
	j.AfterMet = j.After != "" && afterMet != 0
	j.OnHold = hold != 0
	j.Preemptible, j.PreemptRequested = preemptible != 0, preempting != 0
	if exit.Valid {
		c := int(exit.Int64)
		j.ExitCode = &c
	}
	j.GPUIndices = parseInts(gpus)
	j.TimeLimit = dspool.Duration(timeLimit)
	j.CancelRequested = cancel != 0
	if err := json.Unmarshal([]byte(env), &j.Env); err != nil {
		return nil, fmt.Errorf("job %d env: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(cmd), &j.Command); err != nil {
		return nil, fmt.Errorf("job %d command: %w", j.ID, err)
	}
	if secrets != "" {
		if err := json.Unmarshal([]byte(secrets), &j.Secrets); err != nil {
			return nil, fmt.Errorf("job %d secrets: %w", j.ID, err)
		}
	}
	j.SubmittedAt = *fromNano(submitted)
	j.StartedAt = fromNano(started)
	j.FinishedAt = fromNano(finished)
	j.Slot = fromNano(slot)
	return &j, nil
}

func formatInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) []int {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err == nil {
			out = append(out, n)
		}
	}
	return out
}

type submitReq struct {
	ctx     context.Context
	userID  int64
	spec    *dspool.JobSpec
	job     *dspool.Job
	created bool
	err     error
	done    chan struct{}
	// fire, when set, is a schedule's slot to record with its job, fenced
	// (FireSchedule); userID and spec are then the firing's.
	fire *Firing
}

// SubmitJob stores a new queued job for userID and returns it once it is
// durable. When spec carries an idempotency key the user already used, the
// existing job is returned with created false and nothing is stored.
//
// Concurrent submissions are committed together (group commit): one fsync
// makes a whole batch durable.
func (db *DB) SubmitJob(ctx context.Context, userID int64, spec *dspool.JobSpec) (*dspool.Job, bool, error) {
	req := &submitReq{ctx: ctx, userID: userID, spec: spec, done: make(chan struct{})}
	db.enqueue(req)
	return req.job, req.created, req.err
}

// enqueue hands req to the group commit and waits until it is done.
func (db *DB) enqueue(req *submitReq) {
	select {
	case db.submit <- req:
	case <-req.ctx.Done():
		req.err = req.ctx.Err()
		return
	case <-db.done:
		req.err = dspool.Errorf(dspool.EUnavailable, "store is closing: retry")
		return
	}
	<-req.done
}

const maxBatch = 256

func (db *DB) submitLoop() {
	for {
		var batch []*submitReq
		select {
		case r := <-db.submit:
			batch = append(batch, r)
		case <-db.done:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-db.submit:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
	}
}

func (db *DB) commitBatch(batch []*submitReq) {
	now := db.now()
	err := db.tx(context.Background(), func(tx *sql.Tx) error {
		for _, r := range batch {
			r.job, r.created, r.err = nil, false, nil
			if r.ctx.Err() != nil {
				r.err = r.ctx.Err()
				continue
			}
			if r.fire != nil {
				r.job, r.err = fireSlot(tx, r.fire, now)
				r.created = r.err == nil && r.job != nil
			} else {
				r.job, r.created, r.err = insertJob(tx, r.userID, r.spec, jobLink{}, now)
			}
			if r.err != nil && dspool.ErrorCode(r.err) == dspool.EInternal {
				return r.err
			}
		}
		return nil
	})
	for _, r := range batch {
		if err != nil {
			r.job, r.created, r.err = nil, false, fmt.Errorf("submit job: %w", err)
		}
		close(r.done)
	}
}

// jobLink ties a job to the schedule that submitted it, and the slot it
// runs for; the zero value ties it to none.
type jobLink struct {
	schedule string
	slot     *time.Time
}

func insertJob(tx *sql.Tx, userID int64, s *dspool.JobSpec, link jobLink, now time.Time) (*dspool.Job, bool, error) {
	if s.IdempotencyKey != "" {
		row := tx.QueryRow(`SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id
			WHERE j.user_id = ? AND j.idem_key = ?`, userID, s.IdempotencyKey)
		j, err := scanJob(row)
		if err == nil {
			return j, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, false, err
		}
	}
	env, _ := json.Marshal(s.Env)
	if s.Env == nil {
		env = []byte("{}")
	}
	cmd, _ := json.Marshal(s.Command)
	secrets := ""
	if len(s.Secrets) > 0 {
		b, _ := json.Marshal(s.Secrets)
		secrets = string(b)
	}
	deps, err := findDeps(tx, userID, s.Deps)
	if err != nil {
		return nil, false, err
	}
	var id int64
	err = tx.QueryRow(`INSERT INTO jobs (user_id, team, name, pool, state, attempt, cpus, memory, gpus, time_limit,
		retries, priority, env, workdir, command, idem_key, submitted_at, secrets, schedule, slot, deps, after_met, on_hold, image,
		gpu_type, gpu_memory, preemptible)
		VALUES (?, ?, ?, ?, 'queued', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		userID, s.Team, s.Name, s.Pool, int64(s.CPUs), int64(s.Memory), s.GPUs, int64(s.TimeLimit), s.Retries, s.PriorityOrZero(),
		string(env), s.Workdir, string(cmd), s.IdempotencyKey, unixNano(now), secrets, link.schedule, nullTime(link.slot),
		s.After, boolInt(len(deps) == 0), boolInt(s.Hold), s.Image, s.GPUType, int64(s.GPUMemory), boolInt(s.Preemptible)).Scan(&id)
	if err != nil {
		return nil, false, fmt.Errorf("insert job: %w", err)
	}
	if err := insertDeps(tx, id, false, deps); err != nil {
		return nil, false, err
	}
	j, err := getJob(tx, id)
	return j, err == nil, err
}

type querier interface {
	QueryRow(string, ...any) *sql.Row
}

func getJob(q querier, id int64) (*dspool.Job, error) {
	j, err := scanJob(q.QueryRow(`SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id WHERE j.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("job", id)
	}
	return j, err
}

// Job returns job id.
func (db *DB) Job(ctx context.Context, id int64) (*dspool.Job, error) {
	j, err := scanJob(db.r.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id WHERE j.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("job", id)
	}
	return j, err
}

// JobFilter selects jobs for ListJobs. Zero fields select everything.
type JobFilter struct {
	User   string
	States []dspool.JobState
	Pool   string
	Node   string
	// Schedule selects the jobs of the user's schedule of that name (User
	// must be set).
	Schedule string
	// Before returns only jobs with a smaller id (pagination, newest first).
	Before int64
	Limit  int
	// Arrays lists each array as its first task (whose Array the caller
	// fills in), which matches States when any task of the array is in
	// one of them.
	Arrays bool
	// Array lists only the tasks of this array.
	Array int64
}

// ListJobs returns jobs matching f, newest first.
func (db *DB) ListJobs(ctx context.Context, f JobFilter) ([]*dspool.Job, error) {
	q, args, err := listQuery(f)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []*dspool.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// listQuery is the statement of ListJobs for f, and its arguments.
func listQuery(f JobFilter) (string, []any, error) {
	var where []string
	var args []any
	if f.User != "" {
		// The user's id first, then their jobs by the index that starts
		// with it: a join on the name leaves the order to the planner,
		// and PostgreSQL never gathers statistics of a table of fewer than
		// 50 rows, as users often is.
		where = append(where, "j.user_id = (SELECT id FROM users WHERE name = ?)")
		args = append(args, f.User)
	}
	if len(f.States) > 0 {
		// States are written into the statement (they are a closed set) so
		// SQLite can prove a partial index applies, which it cannot with
		// bound parameters.
		var lits []string
		for _, s := range f.States {
			if !s.Valid() {
				return "", nil, dspool.Invalid("state", "%q is not a job state", s)
			}
			lits = append(lits, "'"+string(s)+"'")
		}
		in := "j.state = " + lits[0]
		if len(lits) > 1 {
			in = "j.state IN (" + strings.Join(lits, ",") + ")"
		}
		if f.Arrays {
			in = "(j.array_id = 0 AND " + in + " OR j.array_id = j.id AND EXISTS (SELECT 1 FROM jobs t WHERE t.array_id != 0 AND t.array_id = j.id AND " +
				strings.ReplaceAll(in, "j.state", "t.state") + "))"
		}
		where = append(where, in)
	}
	if f.Arrays {
		where = append(where, "(j.array_id = 0 OR j.array_id = j.id)")
	}
	if f.Array != 0 {
		where = append(where, "j.array_id != 0 AND j.array_id = ?")
		args = append(args, f.Array)
	}
	if f.Pool != "" {
		where = append(where, "j.pool = ?")
		args = append(args, f.Pool)
	}
	if f.Node != "" {
		where = append(where, "j.node = ?")
		args = append(args, f.Node)
	}
	if f.Schedule != "" {
		// != '' lets SQLite prove that the partial index jobs_schedule
		// applies.
		where = append(where, "j.schedule = ?", "j.schedule != ''")
		args = append(args, f.Schedule)
	}
	if f.Before > 0 {
		where = append(where, "j.id < ?")
		args = append(args, f.Before)
	}
	q := `SELECT ` + jobCols + ` FROM jobs j JOIN users u ON u.id = j.user_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY j.id DESC"
	if f.Limit > 0 {
		q += " LIMIT " + strconv.Itoa(f.Limit)
	}
	return q, args, nil
}

// ActiveJob is what the scheduler needs of a queued or running job.
type ActiveJob struct {
	ID         int64
	User       string
	Team       string
	Pool       string
	State      dspool.JobState
	Priority   int
	Attempt    int
	CPUs       dspool.MilliCPU
	Memory     dspool.Bytes
	GPUs       int
	Node       string
	GPUIndices []int
	// Array is the array the job is a task of (0: none), and ArrayMax
	// how many of its tasks may run at once (0: no cap).
	Array    int64
	ArrayMax int
	// SubmittedAt and TimeLimit order the queue and plan reservations;
	// StartedAt is when the running attempt started (nil: not yet).
	SubmittedAt time.Time
	StartedAt   *time.Time
	TimeLimit   time.Duration
	// GPUWant is what the job asks of each GPU (its model and memory).
	GPUWant dspool.GPUWant
	// Preemptible: a job of a higher score may evict it; Preempting: an
	// eviction is under way.
	Preemptible, Preempting bool
}

// indexedByJobsActive holds SQLite to the index of active jobs, which its
// planner would otherwise pass over for a scan of jobs_queue; PostgreSQL's
// planner weighs them by their statistics.
const indexedByJobsActive = `INDEXED BY jobs_active`

const activeJobs = `SELECT j.id, u.name, j.team, j.pool, j.state, j.priority, j.attempt, j.cpus, j.memory,
	j.gpus, j.node, j.gpu_indices, j.array_id, COALESCE(a.max_running, 0), j.submitted_at, j.started_at, j.time_limit,
	j.gpu_type, j.gpu_memory, j.preemptible, j.preempt_requested
	FROM jobs j ` + indexedByJobsActive + ` JOIN users u ON u.id = j.user_id LEFT JOIN job_arrays a ON a.id = j.array_id AND j.array_id != 0
	WHERE j.state IN ('queued', 'running') AND j.parked = 0 AND (j.state = 'running' OR j.on_hold = 0 AND j.after_met = 1) ORDER BY j.id`

// ActiveJobs returns every running job and every queued job that may run
// (not held, not waiting for other jobs), oldest first: the scheduler's view
// of the queue and of what holds node resources. It reads only the columns
// placement needs.
func (db *DB) ActiveJobs(ctx context.Context) ([]ActiveJob, error) {
	rows, err := db.r.QueryContext(ctx, db.sql(activeJobs, strings.Replace(activeJobs, indexedByJobsActive, "", 1)))
	if err != nil {
		return nil, fmt.Errorf("active jobs: %w", err)
	}
	defer rows.Close()
	var out []ActiveJob
	for rows.Next() {
		var j ActiveJob
		var gpus string
		var submitted, limit int64
		var started sql.NullInt64
		if err := rows.Scan(&j.ID, &j.User, &j.Team, &j.Pool, &j.State, &j.Priority, &j.Attempt, &j.CPUs, &j.Memory, &j.GPUs, &j.Node, &gpus,
			&j.Array, &j.ArrayMax, &submitted, &started, &limit, &j.GPUWant.Type, &j.GPUWant.Memory, &j.Preemptible, &j.Preempting); err != nil {
			return nil, err
		}
		j.GPUIndices = parseInts(gpus)
		j.SubmittedAt, j.StartedAt, j.TimeLimit = time.Unix(0, submitted), fromNano(started), time.Duration(limit)
		out = append(out, j)
	}
	return out, rows.Err()
}

// CountJobs returns how many jobs are in each state.
func (db *DB) CountJobs(ctx context.Context) (map[dspool.JobState]int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT state, count(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[dspool.JobState]int{}
	for rows.Next() {
		var s dspool.JobState
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// Attempts returns the attempts of job id, first first.
func (db *DB) Attempts(ctx context.Context, id int64) ([]dspool.Attempt, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT job_id, number, node, gpu_indices, started_at, finished_at, exit_code, reason, message
		FROM attempts WHERE job_id = ? ORDER BY number`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dspool.Attempt
	for rows.Next() {
		var a dspool.Attempt
		var gpus string
		var started, finished, exit sql.NullInt64
		if err := rows.Scan(&a.Job, &a.Number, &a.Node, &gpus, &started, &finished, &exit, &a.Reason, &a.Message); err != nil {
			return nil, err
		}
		a.GPUIndices = parseInts(gpus)
		a.StartedAt, a.FinishedAt = fromNano(started), fromNano(finished)
		if exit.Valid {
			c := int(exit.Int64)
			a.ExitCode = &c
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Placement assigns a queued job's current attempt to a node.
type Placement struct {
	Job     int64
	Attempt int
	Node    string
	GPUs    []int
}

// Place applies placements in one transaction. A placement whose job is no
// longer queued at that attempt (cancelled meanwhile) is skipped; the jobs
// actually placed are returned.
func (db *DB) Place(ctx context.Context, ps []Placement) ([]*dspool.Job, error) {
	var placed []*dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		placed = placed[:0]
		for _, p := range ps {
			res, err := tx.Exec(`UPDATE jobs SET state = 'running', node = ?, gpu_indices = ?, reason = '',
				exit_code = NULL, message = '', started_at = NULL, finished_at = NULL
				WHERE id = ? AND state = 'queued' AND attempt = ?`, p.Node, formatInts(p.GPUs), p.Job, p.Attempt)
			if err != nil {
				return fmt.Errorf("place job %d: %w", p.Job, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			if _, err := tx.Exec(`INSERT INTO attempts (job_id, number, node, gpu_indices) VALUES (?, ?, ?, ?)`,
				p.Job, p.Attempt, p.Node, formatInts(p.GPUs)); err != nil {
				return fmt.Errorf("record attempt %d of job %d: %w", p.Attempt, p.Job, err)
			}
			j, err := getJob(tx, p.Job)
			if err != nil {
				return err
			}
			placed = append(placed, j)
		}
		return nil
	})
	return placed, err
}

// MarkStarted records that the agent started attempt of job on node. A stale
// report is refused with an EConflict error.
func (db *DB) MarkStarted(ctx context.Context, id int64, attempt int, node string, at time.Time) (*dspool.Job, error) {
	return db.fenced(ctx, id, attempt, node, func(tx *sql.Tx, j *dspool.Job) error {
		return markStarted(tx, j, at)
	})
}

func markStarted(tx *sql.Tx, j *dspool.Job, at time.Time) error {
	if j.StartedAt != nil {
		return nil
	}
	j.StartedAt = &at
	if _, err := tx.Exec(`UPDATE jobs SET started_at = ? WHERE id = ?`, unixNano(at), j.ID); err != nil {
		return err
	}
	_, err := tx.Exec(`UPDATE attempts SET started_at = ? WHERE job_id = ? AND number = ?`, unixNano(at), j.ID, j.Attempt)
	return err
}

// fenced runs fn in a transaction on job id, only if attempt on node is its
// current attempt (else an EConflict error), and returns the job as fn
// left it.
func (db *DB) fenced(ctx context.Context, id int64, attempt int, node string, fn func(*sql.Tx, *dspool.Job) error) (*dspool.Job, error) {
	var j *dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		j, err = fencedJob(tx, id, attempt, node)
		if err != nil {
			return err
		}
		return fn(tx, j)
	})
	return j, err
}

func fencedJob(tx *sql.Tx, id int64, attempt int, node string) (*dspool.Job, error) {
	j, err := getJob(tx, id)
	if err != nil {
		return nil, err
	}
	return j, j.Fence(attempt, node)
}
