package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dspool/dspool"
)

// Schedules: recurring jobs. A schedule remembers the latest slot it fired
// and the next one; firing a slot (FireSchedule) records it and inserts its
// job in one transaction that holds only if the schedule still waits for
// that slot, so a slot fires once, whatever crashes or restarts around it.

const schedulesMigration = `CREATE TABLE schedules (
		id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id), team TEXT NOT NULL DEFAULT '',
		name TEXT NOT NULL, cron TEXT NOT NULL, tz TEXT NOT NULL, overlap TEXT NOT NULL,
		starting_deadline INTEGER NOT NULL DEFAULT 0, job TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
		last_slot INTEGER, last_job INTEGER, next_slot INTEGER, message TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL, UNIQUE (user_id, name));
	CREATE INDEX schedules_next ON schedules(next_slot) WHERE next_slot IS NOT NULL;
	ALTER TABLE jobs ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
	ALTER TABLE jobs ADD COLUMN slot INTEGER;
	CREATE INDEX jobs_schedule ON jobs(user_id, schedule, id) WHERE schedule != '';`

const scheduleCols = `s.id, u.name, s.name, s.cron, s.tz, s.overlap, s.starting_deadline, s.job, s.paused,
	s.last_slot, s.last_job, s.next_slot, s.message, s.created_at`

const scheduleFrom = ` FROM schedules s JOIN users u ON u.id = s.user_id`

// What the loop that fires schedules reads each second, by the index
// schedules_next (plan_internal_test.go checks the plans).
const (
	dueSchedules = `SELECT ` + scheduleCols + scheduleFrom + ` WHERE s.next_slot IS NOT NULL AND s.next_slot <= ? ORDER BY s.next_slot, s.id`
	nextSlot     = `SELECT min(next_slot) FROM schedules WHERE next_slot IS NOT NULL`
)

func scanSchedule(r scanner) (*dspool.Schedule, error) {
	var s dspool.Schedule
	var job string
	var deadline int64
	var paused int
	var last, lastJob, next sql.NullInt64
	var created int64
	if err := r.Scan(&s.ID, &s.User, &s.Name, &s.Cron, &s.Timezone, &s.Overlap, &deadline, &job, &paused,
		&last, &lastJob, &next, &s.Message, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(job), &s.Job); err != nil {
		return nil, fmt.Errorf("schedule %d job: %w", s.ID, err)
	}
	s.StartingDeadline = dspool.Duration(deadline)
	s.Paused = paused != 0
	s.LastSlot, s.NextSlot = fromNano(last), fromNano(next)
	s.LastJob = lastJob.Int64
	s.CreatedAt = time.Unix(0, created).UTC()
	return &s, nil
}

// CreateSchedule stores a new schedule of userID, whose first slot is
// next. The spec must have been normalized. A user has at most
// dspool.MaxSchedules, with names of their own.
func (db *DB) CreateSchedule(ctx context.Context, userID int64, spec *dspool.ScheduleSpec, next time.Time) (*dspool.Schedule, error) {
	job, err := json.Marshal(spec.Job)
	if err != nil {
		return nil, fmt.Errorf("create schedule %s: %w", spec.Name, err)
	}
	var s *dspool.Schedule
	err = db.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM schedules WHERE user_id = ?`, userID).Scan(&n); err != nil {
			return err
		}
		if n >= dspool.MaxSchedules {
			return dspool.Errorf(dspool.EConflict, "you have %d schedules, the most a user may have: delete one first (`dspool schedule list`)", n)
		}
		var id int64
		err := tx.QueryRow(`INSERT INTO schedules (user_id, team, name, cron, tz, overlap, starting_deadline, job, next_slot, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, name) DO NOTHING RETURNING id`,
			userID, spec.Job.Team, spec.Name, spec.Cron, spec.Timezone, string(spec.Overlap), int64(spec.StartingDeadline),
			string(job), unixNano(next), unixNano(db.now())).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return dspool.Errorf(dspool.EConflict, "you already have a schedule named %s: delete it first (`dspool schedule delete %s`), or choose another name", spec.Name, spec.Name)
		} else if err != nil {
			return fmt.Errorf("insert schedule: %w", err)
		}
		s, err = getSchedule(tx, id)
		return err
	})
	return s, err
}

func getSchedule(q querier, id int64) (*dspool.Schedule, error) {
	s, err := scanSchedule(q.QueryRow(`SELECT `+scheduleCols+scheduleFrom+` WHERE s.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("schedule", id)
	}
	return s, err
}

// Schedule returns schedule id.
func (db *DB) Schedule(ctx context.Context, id int64) (*dspool.Schedule, error) {
	return getSchedule(readQuerier{ctx, db.r}, id)
}

// ScheduleNamed returns user's schedule name.
func (db *DB) ScheduleNamed(ctx context.Context, user, name string) (*dspool.Schedule, error) {
	s, err := scanSchedule(db.r.QueryRowContext(ctx, `SELECT `+scheduleCols+scheduleFrom+` WHERE u.name = ? AND s.name = ?`, user, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("schedule", name)
	}
	return s, err
}

// Schedules returns user's schedules by name, or everyone's by user and
// name when user is "".
func (db *DB) Schedules(ctx context.Context, user string) ([]*dspool.Schedule, error) {
	q := `SELECT ` + scheduleCols + scheduleFrom
	var args []any
	if user != "" {
		q += ` WHERE u.name = ?`
		args = append(args, user)
	}
	out, err := queryAll(ctx, db.r, scanSchedule, q+` ORDER BY u.name, s.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// DueSchedules returns the schedules not paused whose next slot is at or
// before now, earliest first.
func (db *DB) DueSchedules(ctx context.Context, now time.Time) ([]*dspool.Schedule, error) {
	out, err := queryAll(ctx, db.r, scanSchedule, dueSchedules, unixNano(now))
	if err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	return out, nil
}

// NextSlot is the earliest next slot of any schedule; nil when none waits
// for one.
func (db *DB) NextSlot(ctx context.Context) (*time.Time, error) {
	var next sql.NullInt64
	if err := db.r.QueryRowContext(ctx, nextSlot).Scan(&next); err != nil {
		return nil, fmt.Errorf("next slot: %w", err)
	}
	return fromNano(next), nil
}

// PauseSchedule stops schedule id firing: it waits for no slot until
// resumed.
func (db *DB) PauseSchedule(ctx context.Context, id int64) (*dspool.Schedule, error) {
	return db.setSchedule(ctx, id, `UPDATE schedules SET paused = 1, next_slot = NULL WHERE id = ?`, id)
}

// ResumeSchedule lets schedule id fire again, from its slot next (the
// slots while it was paused do not run).
func (db *DB) ResumeSchedule(ctx context.Context, id int64, next time.Time) (*dspool.Schedule, error) {
	return db.setSchedule(ctx, id, `UPDATE schedules SET paused = 0, next_slot = ?, message = '' WHERE id = ?`, unixNano(next), id)
}

func (db *DB) setSchedule(ctx context.Context, id int64, query string, args ...any) (*dspool.Schedule, error) {
	var s *dspool.Schedule
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(query, args...)
		if err != nil {
			return fmt.Errorf("update schedule %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("schedule", id)
		}
		s, err = getSchedule(tx, id)
		return err
	})
	return s, err
}

// DeleteSchedule deletes schedule id; the jobs it submitted stay as they
// are.
func (db *DB) DeleteSchedule(ctx context.Context, id int64) error {
	res, err := db.exec(ctx, `DELETE FROM schedules WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete schedule %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("schedule", id)
	}
	return nil
}

// Firing is one slot of a schedule, as FireSchedule records it.
type Firing struct {
	Schedule int64
	// Expect is the next slot the schedule had when the caller read it:
	// the firing holds only if it still has it (not fired since, paused,
	// resumed or deleted).
	Expect time.Time
	// Slot is the slot that fires (Expect, or a later one the control
	// plane was late for), Following the one after it (zero: none).
	Slot, Following time.Time
	// Job is the job the slot submits for UserID, normalized and checked;
	// nil when it submits none (skipped, refused).
	UserID int64
	Job    *dspool.JobSpec
	// Message says why no job, or why late; "" for a slot on time.
	Message string
}

// ErrSlotFired is the EConflict FireSchedule returns when the schedule no
// longer waits for the slot the firing expected.
var ErrSlotFired = dspool.Errorf(dspool.EConflict, "the schedule no longer waits for this slot: it fired, or was paused, resumed or deleted")

// FireSchedule records that f.Slot fired and inserts its job (if any), in
// one transaction, fenced on f.Expect: when the schedule no longer has it
// as its next slot, nothing is written and the error is ErrSlotFired.
// Firings and submissions at the same time are committed together, as
// SubmitJob's are.
func (db *DB) FireSchedule(ctx context.Context, f Firing) (*dspool.Job, error) {
	req := &submitReq{ctx: ctx, fire: &f, done: make(chan struct{})}
	db.enqueue(req)
	if req.err != nil && !errors.Is(req.err, ErrSlotFired) {
		return nil, fmt.Errorf("fire schedule %d at %s: %w", f.Schedule, f.Slot.Format(time.RFC3339), req.err)
	}
	return req.job, req.err
}

// fireSlot is FireSchedule's part of a transaction. It writes nothing
// before the fence holds, so a firing refused leaves the others of its
// transaction as they are.
func fireSlot(tx *sql.Tx, f *Firing, now time.Time) (*dspool.Job, error) {
	var name string
	err := tx.QueryRow(`SELECT name FROM schedules WHERE id = ? AND next_slot = ?`, f.Schedule, unixNano(f.Expect)).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrSlotFired
	} else if err != nil {
		return nil, err
	}
	var j *dspool.Job
	var lastJob any
	if f.Job != nil {
		slot := f.Slot
		if j, _, err = insertJob(tx, f.UserID, f.Job, jobLink{schedule: name, slot: &slot}, now); err != nil {
			return nil, err
		}
		lastJob = j.ID
	}
	var following any
	if !f.Following.IsZero() {
		following = unixNano(f.Following)
	}
	if _, err := tx.Exec(`UPDATE schedules SET last_slot = ?, last_job = ?, next_slot = ?, message = ? WHERE id = ?`,
		unixNano(f.Slot), lastJob, following, f.Message, f.Schedule); err != nil {
		return nil, err
	}
	return j, nil
}

// readQuerier runs QueryRow on the read pool with a context.
type readQuerier struct {
	ctx context.Context
	db  *sql.DB
}

func (q readQuerier) QueryRow(query string, args ...any) *sql.Row {
	return q.db.QueryRowContext(q.ctx, query, args...)
}
