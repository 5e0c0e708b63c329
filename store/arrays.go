package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/dspool/dspool"
)

// Queries on the tasks of an array write "array_id != 0" out, so that
// SQLite proves the partial index jobs_array applies; those of the queue
// and of lists write out the conditions of jobs_active and jobs_heads.
//
// Parked tasks: a large array's tasks past its first arrayWindow are
// stored parked, queued but outside the queue the scheduler and autoscaler
// read (jobs_active), and come into it a window at a time (Unpark), so
// that an array of 100,000 costs each pass what a few thousand jobs do.
// Lists read their first lines by jobs_heads, which holds plain jobs and
// each array's first task only.
const arraysMigration = `ALTER TABLE jobs ADD COLUMN array_id INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN array_index INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN deps TEXT NOT NULL DEFAULT '';
	ALTER TABLE jobs ADD COLUMN after_met INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE jobs ADD COLUMN on_hold INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE jobs ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX jobs_array ON jobs(array_id, id) WHERE array_id != 0;
	CREATE INDEX jobs_array_state ON jobs(array_id, state, parked, array_index) WHERE array_id != 0;
	CREATE INDEX jobs_parked ON jobs(array_id, id) WHERE parked = 1;
	CREATE INDEX jobs_active ON jobs(id) WHERE state IN ('queued', 'running') AND parked = 0;
	CREATE INDEX jobs_heads ON jobs(user_id, id) WHERE array_id = 0 OR array_id = id;
	CREATE INDEX jobs_heads_all ON jobs(id) WHERE array_id = 0 OR array_id = id;
	CREATE TABLE job_arrays (
		id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), indices TEXT NOT NULL,
		tasks INTEGER NOT NULL, max_running INTEGER NOT NULL, created_at INTEGER NOT NULL,
		parked INTEGER NOT NULL DEFAULT 0);
	CREATE INDEX job_arrays_parked ON job_arrays(id) WHERE parked > 0;
	CREATE TABLE job_deps (
		waiter INTEGER NOT NULL, waiter_array INTEGER NOT NULL, kind TEXT NOT NULL,
		on_job INTEGER NOT NULL, on_array INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (waiter, waiter_array, kind, on_job, on_array));
	CREATE INDEX job_deps_open ON job_deps(waiter) WHERE done = 0;`

// SubmitArray stores the tasks of an array (spec.Tasks, from Normalize) in
// one transaction, each a queued job, and returns the first task, whose id
// names the array. With an idempotency key the user already used, the job
// it made is returned with created false.
func (db *DB) SubmitArray(ctx context.Context, userID int64, s *dspool.JobSpec) (*dspool.Job, bool, error) {
	if s.Tasks == nil || len(s.Tasks.Indices) == 0 {
		return nil, false, dspool.Invalid("array", "has no tasks")
	}
	var first *dspool.Job
	created := false
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if s.IdempotencyKey != "" {
			j, err := scanJob(tx.QueryRow(`SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id
				WHERE j.user_id = ? AND j.idem_key = ?`, userID, s.IdempotencyKey))
			if err == nil {
				first = j
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		deps, err := findDeps(tx, userID, s.Deps)
		if err != nil {
			return err
		}
		cmd, _ := json.Marshal(s.Command)
		secrets := ""
		if len(s.Secrets) > 0 {
			b, _ := json.Marshal(s.Secrets)
			secrets = string(b)
		}
		base, _ := json.Marshal(s.Env)
		if s.Env == nil {
			base = []byte("{}")
		}
		// The first task is inserted alone, for the id that names the
		// array; the others go in statements of many rows each.
		const cols = `INSERT INTO jobs (user_id, team, name, pool, state, attempt, cpus, memory, gpus, time_limit,
			retries, priority, env, workdir, command, idem_key, submitted_at, secrets, deps, after_met, on_hold, array_id, array_index, parked, image, gpu_type, gpu_memory,
			preemptible) VALUES `
		const row = `(?, ?, ?, ?, 'queued', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
		now := unixNano(db.now())
		var arrayID int64
		args := func(buf []any, k int) []any {
			env := string(base)
			if k < len(s.Sweep) {
				e := maps.Clone(s.Env)
				if e == nil {
					e = map[string]string{}
				}
				maps.Copy(e, s.Sweep[k])
				b, _ := json.Marshal(e)
				env = string(b)
			}
			key := ""
			if k == 0 {
				key = s.IdempotencyKey
			}
			return append(buf, userID, s.Team, s.Name, s.Pool, int64(s.CPUs), int64(s.Memory), s.GPUs, int64(s.TimeLimit),
				s.Retries, s.PriorityOrZero(), env, s.Workdir, string(cmd), key, now, secrets, s.After, boolInt(len(deps) == 0), boolInt(s.Hold),
				arrayID, s.Tasks.Indices[k], boolInt(k >= arrayWindow), s.Image, s.GPUType, int64(s.GPUMemory), boolInt(s.Preemptible))
		}
		if err := tx.QueryRowContext(ctx, cols+row+` RETURNING id`, args(nil, 0)...).Scan(&arrayID); err != nil {
			return fmt.Errorf("insert task %d: %w", s.Tasks.Indices[0], err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET array_id = ? WHERE id = ?`, arrayID, arrayID); err != nil {
			return err
		}
		const perStmt = 256
		full := cols + strings.TrimSuffix(strings.Repeat(row+",", perStmt), ",")
		stmt, err := tx.PrepareContext(ctx, full)
		if err != nil {
			return err
		}
		defer stmt.Close()
		buf := make([]any, 0, 27*perStmt)
		for k := 1; k < len(s.Tasks.Indices); k += perStmt {
			n := min(perStmt, len(s.Tasks.Indices)-k)
			buf = buf[:0]
			for i := range n {
				buf = args(buf, k+i)
			}
			if n == perStmt {
				_, err = stmt.ExecContext(ctx, buf...)
			} else {
				_, err = tx.ExecContext(ctx, cols+strings.TrimSuffix(strings.Repeat(row+",", n), ","), buf...)
			}
			if err != nil {
				return fmt.Errorf("insert tasks: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO job_arrays (id, user_id, indices, tasks, max_running, created_at, parked) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			arrayID, userID, s.Tasks.String(), len(s.Tasks.Indices), s.Tasks.MaxRunning, now, max(0, len(s.Tasks.Indices)-arrayWindow)); err != nil {
			return fmt.Errorf("insert array: %w", err)
		}
		if err := insertDeps(tx, arrayID, true, deps); err != nil {
			return err
		}
		created = true
		first, err = getJob(tx, arrayID)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("submit array: %w", err)
	}
	return first, created, nil
}

// arrayWindow is how many queued tasks of an array the queue holds at
// most (the others are parked); Unpark tops it up once it is half empty.
const arrayWindow = 2000

// Unpark brings parked tasks into the queue, a window at a time, for every
// array whose queued tasks in the queue fell below half a window. It
// returns how many it brought, and whether any array still has tasks
// parked.
func (db *DB) Unpark(ctx context.Context) (int, bool, error) {
	ids, err := queryIDs(ctx, db.r, `SELECT id FROM job_arrays WHERE parked > 0`)
	if err != nil || len(ids) == 0 {
		return 0, false, err
	}
	total, more := 0, false
	for _, a := range ids {
		var n int
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM jobs WHERE array_id != 0 AND array_id = ? AND state = 'queued' AND parked = 0`, a).Scan(&n); err != nil {
			return total, true, err
		}
		if n >= arrayWindow/2 {
			more = true
			continue
		}
		err := db.tx(ctx, func(tx *sql.Tx) error {
			got, err := queryIDs(ctx, tx, `UPDATE jobs SET parked = 0 WHERE id IN (SELECT id FROM jobs WHERE parked = 1 AND array_id = ?
				ORDER BY id LIMIT ?) AND state = 'queued' RETURNING id`, a, arrayWindow-n)
			if err != nil {
				return err
			}
			total += len(got)
			left := `parked - ?`
			if len(got) == 0 { // what was parked has ended (cancelled)
				left = `0 * ?`
			}
			var still int
			if err := tx.QueryRowContext(ctx, `UPDATE job_arrays SET parked = `+db.sql("max", "GREATEST")+`(0, `+left+`) WHERE id = ? RETURNING parked`, len(got), a).Scan(&still); err != nil {
				return err
			}
			more = more || still > 0
			return nil
		})
		if err != nil {
			return total, true, fmt.Errorf("unpark array %d: %w", a, err)
		}
	}
	return total, more, nil
}

// dep is one row of job_deps: what a job or an array waits for.
type dep struct {
	kind           string
	onJob, onArray int64 // one of them is set
}

// findDeps resolves what a submission of userID waits for: a job, a whole
// array, or a task, each the user's own. A job that is not there, or not
// theirs, is refused alike, so other users' jobs do not show.
func findDeps(tx *sql.Tx, userID int64, ds []dspool.Dependency) ([]dep, error) {
	var out []dep
	for _, d := range ds {
		notFound := dspool.Invalid("after", "%s: you have no job %s: list yours with `dspool job list`", d, d.On)
		var owner int64
		if d.On.Index >= 0 {
			var id int64
			err := tx.QueryRow(`SELECT id, user_id FROM jobs WHERE array_id != 0 AND array_id = ? AND array_index = ?`, d.On.ID, d.On.Index).Scan(&id, &owner)
			if errors.Is(err, sql.ErrNoRows) || err == nil && owner != userID {
				return nil, notFound
			} else if err != nil {
				return nil, err
			}
			out = append(out, dep{kind: d.Kind, onJob: id})
			continue
		}
		err := tx.QueryRow(`SELECT user_id FROM job_arrays WHERE id = ?`, d.On.ID).Scan(&owner)
		if err == nil {
			if owner != userID {
				return nil, notFound
			}
			out = append(out, dep{kind: d.Kind, onArray: d.On.ID})
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		err = tx.QueryRow(`SELECT user_id FROM jobs WHERE id = ?`, d.On.ID).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) || err == nil && owner != userID {
			return nil, notFound
		} else if err != nil {
			return nil, err
		}
		out = append(out, dep{kind: d.Kind, onJob: d.On.ID})
	}
	return out, nil
}

func insertDeps(tx *sql.Tx, waiter int64, array bool, deps []dep) error {
	for _, d := range deps {
		if _, err := tx.Exec(`INSERT INTO job_deps (waiter, waiter_array, kind, on_job, on_array) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			waiter, boolInt(array), d.kind, d.onJob, d.onArray); err != nil {
			return fmt.Errorf("insert dependency: %w", err)
		}
	}
	return nil
}

// Arrays returns the arrays of ids that exist, summed up, by id.
func (db *DB) Arrays(ctx context.Context, ids []int64) (map[int64]*dspool.ArraySummary, error) {
	out := map[int64]*dspool.ArraySummary{}
	if len(ids) == 0 {
		return out, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	in := "(" + strings.Join(list, ",") + ")"
	rows, err := db.r.QueryContext(ctx, `SELECT id, indices, tasks, max_running FROM job_arrays WHERE id IN `+in)
	if err != nil {
		return nil, fmt.Errorf("arrays: %w", err)
	}
	for rows.Next() {
		a := &dspool.ArraySummary{Counts: map[dspool.JobState]int{}}
		if err := rows.Scan(&a.ID, &a.Indices, &a.Tasks, &a.MaxRunning); err != nil {
			rows.Close()
			return nil, err
		}
		out[a.ID] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = db.r.QueryContext(ctx, `SELECT array_id, state, count(*) FROM jobs WHERE array_id != 0 AND array_id IN `+in+` GROUP BY array_id, state`)
	if err != nil {
		return nil, fmt.Errorf("arrays: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var st dspool.JobState
		var n int
		if err := rows.Scan(&id, &st, &n); err != nil {
			return nil, err
		}
		if a := out[id]; a != nil {
			a.Counts[st] = n
		}
	}
	return out, rows.Err()
}

// Array returns array id summed up.
func (db *DB) Array(ctx context.Context, id int64) (*dspool.ArraySummary, error) {
	as, err := db.Arrays(ctx, []int64{id})
	if err != nil {
		return nil, err
	}
	if a := as[id]; a != nil {
		return a, nil
	}
	return nil, dspool.Errorf(dspool.ENotFound, "no array %d: list yours with `dspool job list`", id)
}

// Task returns the task of array with index.
func (db *DB) Task(ctx context.Context, array int64, index int) (*dspool.Job, error) {
	j, err := scanJob(db.r.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id
		WHERE j.array_id != 0 AND j.array_id = ? AND j.array_index = ?`, array, index))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dspool.Errorf(dspool.ENotFound, "no task %d_%d: see the array's tasks with `dspool job list --array %d`", array, index, array)
	}
	return j, err
}

// CancelArray cancels every task of array that has not ended: the queued
// ones at once, the running ones by request. It returns the queued tasks
// it cancelled and the running ones, whose agents must stop them.
func (db *DB) CancelArray(ctx context.Context, array int64) ([]int64, []*dspool.Job, error) {
	var queued []int64
	var running []*dspool.Job
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if queued, err = queryIDs(ctx, tx, `UPDATE jobs SET state = 'cancelled', finished_at = ?
			WHERE array_id != 0 AND array_id = ? AND state = 'queued' RETURNING id`, unixNano(db.now()), array); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+jobCols+` FROM jobs j JOIN users u ON u.id = j.user_id
			WHERE j.array_id != 0 AND j.array_id = ? AND j.state = 'running' AND j.cancel_requested = 0`, array)
		if err != nil {
			return err
		}
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				rows.Close()
				return err
			}
			running = append(running, j)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, j := range running {
			if err := j.Cancel(db.now()); err != nil {
				return err
			}
			if err := saveJob(tx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cancel array %d: %w", array, err)
	}
	return queued, running, nil
}

// SetHold holds (or releases) job id, or every task of array id, that is
// still queued, and returns how many it changed.
func (db *DB) SetHold(ctx context.Context, id int64, array, hold bool) (int, error) {
	q := `UPDATE jobs SET on_hold = ? WHERE id = ? AND state = 'queued' AND on_hold != ?`
	if array {
		q = `UPDATE jobs SET on_hold = ? WHERE array_id != 0 AND array_id = ? AND state = 'queued' AND on_hold != ?`
	}
	res, err := db.exec(ctx, q, boolInt(hold), id, boolInt(hold))
	if err != nil {
		return 0, fmt.Errorf("hold %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Resolved is what one pass over the dependencies changed.
type Resolved struct {
	Released []int64 // jobs and arrays that no longer wait
	Ended    []int64 // jobs (and tasks) ended because what they waited for can no longer happen
	// Waiting: some jobs still wait for others.
	Waiting bool
}

// ResolveDeps looks at every dependency not yet settled: a job or array
// whose every condition holds may run; one with a condition that can no
// longer hold ends, cancelled with reason dependency and a message that
// says which. Ending jobs can settle others, so it goes on until nothing
// changes.
func (db *DB) ResolveDeps(ctx context.Context) (Resolved, error) {
	var out Resolved
	var open int
	err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM job_deps WHERE done = 0 LIMIT 1) open`).Scan(&open)
	if err != nil || open == 0 {
		return out, err
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		out = Resolved{}
		for range 1000 {
			changed, err := resolveOnce(ctx, tx, db.now, &out)
			if err != nil {
				return err
			}
			if !changed {
				break
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM job_deps WHERE done = 0 LIMIT 1) open`).Scan(&n); err != nil {
			return err
		}
		out.Waiting = n > 0
		return nil
	})
	if err != nil {
		return Resolved{}, fmt.Errorf("resolve dependencies: %w", err)
	}
	return out, nil
}

type waiterKey struct {
	id    int64
	array bool
}

func resolveOnce(ctx context.Context, tx *sql.Tx, now func() time.Time, out *Resolved) (bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT waiter, waiter_array, kind, on_job, on_array FROM job_deps WHERE done = 0`)
	if err != nil {
		return false, err
	}
	type row struct {
		w waiterKey
		d dep
	}
	var open []row
	for rows.Next() {
		var r row
		var arr int
		if err := rows.Scan(&r.w.id, &arr, &r.d.kind, &r.d.onJob, &r.d.onArray); err != nil {
			rows.Close()
			return false, err
		}
		r.w.array = arr != 0
		open = append(open, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(open) == 0 {
		return false, err
	}
	targets := map[dep]target{}
	verdict := map[waiterKey]string{} // "": every condition met so far; else why it never runs
	pending := map[waiterKey]bool{}
	var order []waiterKey
	for _, r := range open {
		if _, seen := verdict[r.w]; !seen {
			verdict[r.w] = ""
			order = append(order, r.w)
		}
		key := dep{onJob: r.d.onJob, onArray: r.d.onArray}
		t, ok := targets[key]
		if !ok {
			if t, err = readTarget(tx, key); err != nil {
				return false, err
			}
			targets[key] = t
		}
		met, never := t.judge(r.d.kind)
		switch {
		case never != "" && verdict[r.w] == "":
			verdict[r.w] = never + fmt.Sprintf(", and this job was to run after it (--after %s:%s)", r.d.kind, t.arg)
		case !met:
			pending[r.w] = true
		}
	}
	changed := false
	for _, w := range order {
		why := verdict[w]
		if why == "" && pending[w] {
			continue
		}
		changed = true
		if _, err := tx.ExecContext(ctx, `UPDATE job_deps SET done = 1 WHERE waiter = ? AND waiter_array = ?`, w.id, boolInt(w.array)); err != nil {
			return false, err
		}
		scope := `id = ?`
		if w.array {
			scope = `array_id != 0 AND array_id = ?`
		}
		if why == "" {
			if _, err := tx.ExecContext(ctx, `UPDATE jobs SET after_met = 1 WHERE `+scope+` AND state = 'queued'`, w.id); err != nil {
				return false, err
			}
			out.Released = append(out.Released, w.id)
			continue
		}
		ids, err := queryIDs(ctx, tx, `SELECT id FROM jobs WHERE `+scope+` AND state = 'queued'`, w.id)
		if err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET state = 'cancelled', reason = ?, message = ?, finished_at = ?
			WHERE `+scope+` AND state = 'queued'`, string(dspool.ReasonDependency), why, unixNano(now()), w.id); err != nil {
			return false, err
		}
		out.Ended = append(out.Ended, ids...)
	}
	return changed, nil
}

// queryIDs returns the ids a query (of one column) answers, in a
// transaction or not.
func queryIDs(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, q string, args ...any) ([]int64, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// target is what a dependency points at, as it is now.
type target struct {
	ref    string // "job 12", "array 40", "task 40_7"
	arg    string // as --after gives it: "12", "40", "40_7"
	gone   bool
	state  dspool.JobState         // a job's
	counts map[dspool.JobState]int // an array's
}

func readTarget(tx *sql.Tx, d dep) (target, error) {
	if d.onArray == 0 {
		t := target{ref: "job " + strconv.FormatInt(d.onJob, 10), arg: strconv.FormatInt(d.onJob, 10)}
		var arr, idx int64
		err := tx.QueryRow(`SELECT state, array_id, array_index FROM jobs WHERE id = ?`, d.onJob).Scan(&t.state, &arr, &idx)
		if errors.Is(err, sql.ErrNoRows) {
			t.gone = true
			return t, nil
		}
		if arr != 0 {
			t.arg = fmt.Sprintf("%d_%d", arr, idx)
			t.ref = "task " + t.arg
		}
		return t, err
	}
	t := target{ref: "array " + strconv.FormatInt(d.onArray, 10), arg: strconv.FormatInt(d.onArray, 10), counts: map[dspool.JobState]int{}}
	rows, err := tx.Query(`SELECT state, count(*) FROM jobs WHERE array_id != 0 AND array_id = ? GROUP BY state`, d.onArray)
	if err != nil {
		return t, err
	}
	defer rows.Close()
	for rows.Next() {
		var st dspool.JobState
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return t, err
		}
		t.counts[st] = n
	}
	t.gone = len(t.counts) == 0
	return t, rows.Err()
}

// judge says whether a condition of kind on t holds now (met), or why it
// never can.
func (t target) judge(kind string) (met bool, never string) {
	if t.gone {
		return false, t.ref + " is no longer in the store"
	}
	var done, bad bool
	var how string
	if t.counts == nil {
		done, bad = t.state.Terminal(), t.state == dspool.JobFailed || t.state == dspool.JobCancelled
		how = t.ref + " " + string(t.state)
		if t.state == dspool.JobSucceeded {
			how = t.ref + " succeeded"
		}
	} else {
		done = t.counts[dspool.JobQueued] == 0 && t.counts[dspool.JobRunning] == 0
		nbad := t.counts[dspool.JobFailed] + t.counts[dspool.JobCancelled]
		bad = nbad > 0
		how = fmt.Sprintf("%s has %d failed or cancelled tasks", t.ref, nbad)
		if !bad {
			how = t.ref + ": every task succeeded"
		}
	}
	switch kind {
	case dspool.AfterOK:
		if bad {
			return false, how
		}
		return done, ""
	case dspool.AfterNotOK:
		if done && !bad {
			return false, how
		}
		return done && bad, ""
	default:
		return done, ""
	}
}

// SetPriority sets the priority of job id when it is queued, or of every
// queued task of the array id. It returns how many jobs are queued there
// (those already at p included).
func (db *DB) SetPriority(ctx context.Context, id int64, array bool, p int) (int, error) {
	q := `UPDATE jobs SET priority = ? WHERE id = ? AND state = 'queued'`
	if array {
		q = `UPDATE jobs SET priority = ? WHERE array_id != 0 AND array_id = ? AND state = 'queued'`
	}
	res, err := db.exec(ctx, q, p, id)
	if err != nil {
		return 0, fmt.Errorf("set the priority of %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
